// Package remote is the bus's SSH and SFTP client to a payload. It pins the
// payload's host key, bounds every dial and command by a context, and moves
// files through SFTP without a shell on the far side.
package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Config says how to reach one payload. The zero value is not usable:
// Address, User, Signer and HostKey are required.
type Config struct {
	Address string        // host:port of the payload's SSH server
	User    string        // the signaling user
	Signer  ssh.Signer    // the bus's key
	HostKey ssh.PublicKey // the only host key accepted
	// AttemptTimeout bounds one dial up to the payload's SSH banner;
	// default 1s. Short, because a payload that is still booting either
	// refuses at once or never answers (no ARP, or a forwarded port whose
	// guest is not listening yet), and Wait retries. The rest of the
	// handshake has HandshakeTimeout.
	AttemptTimeout time.Duration
	// Dial opens the connection; nil: a net.Dialer. A bench with a
	// network of its own dials from inside it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (c Config) check() error {
	if c.Address == "" || c.User == "" || c.Signer == nil || c.HostKey == nil {
		return errors.New("remote: config needs Address, User, Signer and HostKey")
	}
	return nil
}

func (c Config) attemptTimeout() time.Duration {
	if c.AttemptTimeout > 0 {
		return c.AttemptTimeout
	}
	return time.Second
}

// HandshakeTimeout bounds key exchange and login once the payload has sent
// its banner. The payload is up by then, but on an emulated CPU, or a small
// one under load, the handshake takes seconds: cutting it at the attempt
// timeout would hand a closed connection to a payload that was answering.
const HandshakeTimeout = 30 * time.Second

// HostKeyError reports a payload presenting a host key other than the pinned one.
type HostKeyError struct {
	Address string
	Got     ssh.PublicKey
	Want    ssh.PublicKey
}

func (e *HostKeyError) Error() string {
	return fmt.Sprintf("remote: %s: host key mismatch: payload presented %s %s, board pins %s %s",
		e.Address, e.Got.Type(), ssh.FingerprintSHA256(e.Got), e.Want.Type(), ssh.FingerprintSHA256(e.Want))
}

// ExitError is a remote command that ran and exited non-zero.
type ExitError struct {
	Cmd    string
	Status int
	Stderr string // the first 64 KiB of standard error
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("%q exited %d", e.Cmd, e.Status)
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

// Client is an open SSH connection to a payload, with SFTP on demand.
type Client struct {
	cfg  Config
	conn *ssh.Client

	mu   sync.Mutex // guards sftp
	sftp *sftp.Client
}

// Dial makes one attempt to connect and authenticate.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, cfg.attemptTimeout())
	defer cancel()
	dial := cfg.Dial
	if dial == nil {
		dial = new(net.Dialer).DialContext
	}
	nc, err := dial(actx, "tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("remote: dial %s: %w", cfg.Address, err)
	}
	// The handshake has no context of its own: deadlines on the
	// connection bound it (the attempt's until the banner, then
	// HandshakeTimeout), and closing the connection aborts it when ctx
	// ends.
	deadline, _ := actx.Deadline()
	nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	var hkErr *HostKeyError
	sc, chans, reqs, err := ssh.NewClientConn(&bannerConn{Conn: nc}, cfg.Address, &ssh.ClientConfig{
		User: cfg.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if bytes.Equal(key.Marshal(), cfg.HostKey.Marshal()) {
				return nil
			}
			hkErr = &HostKeyError{Address: cfg.Address, Got: key, Want: cfg.HostKey}
			return hkErr
		},
		HostKeyAlgorithms: []string{cfg.HostKey.Type()},
	})
	// ctx may end just as the handshake succeeds: the connection is then
	// closed, or about to be, and must not be handed out.
	if !stop() {
		nc.Close()
		return nil, fmt.Errorf("remote: ssh %s@%s: %w", cfg.User, cfg.Address, context.Cause(ctx))
	}
	if hkErr != nil {
		nc.Close()
		return nil, hkErr
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("remote: ssh %s@%s: %w", cfg.User, cfg.Address, err)
	}
	nc.SetDeadline(time.Time{})
	return &Client{cfg: cfg, conn: ssh.NewClient(sc, chans, reqs)}, nil
}

// bannerConn moves the connection's deadline from the attempt's to
// HandshakeTimeout when the first bytes arrive from the payload.
type bannerConn struct {
	net.Conn
	once sync.Once
}

func (c *bannerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.once.Do(func() { c.Conn.SetDeadline(time.Now().Add(HandshakeTimeout)) })
	}
	return n, err
}

// Wait dials until the payload answers SSH or ctx is done. A host key
// mismatch, a refused login or an incomplete Config ends the wait at once:
// retrying cannot fix it.
func Wait(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	// A local payload answers within milliseconds, a booting board within
	// seconds: start retrying fast and back off.
	delay := 10 * time.Millisecond
	retry := time.NewTimer(delay)
	defer retry.Stop()
	for {
		c, err := Dial(ctx, cfg)
		if err == nil {
			return c, nil
		}
		var hk *HostKeyError
		if errors.As(err, &hk) || isAuthError(err) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("remote: %s did not answer SSH: %w (last error: %v)", cfg.Address, context.Cause(ctx), err)
		case <-retry.C:
			delay = min(2*delay, 250*time.Millisecond)
			retry.Reset(delay)
		}
	}
}

func isAuthError(err error) bool {
	var serr *ssh.ServerAuthError
	if errors.As(err, &serr) {
		return true
	}
	// x/crypto/ssh reports exhausted methods as a plain error.
	return err != nil && bytes.Contains([]byte(err.Error()), []byte("unable to authenticate"))
}

// Close closes the connection. The connection goes first: SFTP's Close
// waits for its reader, which ends only when the connection does, and a
// payload that lost power (a QEMU stopped dead) never closes its end.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.conn.Close()
	if c.sftp != nil {
		c.sftp.Close()
	}
	return err
}

// Run runs cmd and waits for it. Standard output goes to stdout (may be
// nil); a non-zero exit is an *ExitError carrying standard error. When ctx
// ends first the session is closed, which ends the command on the payload.
func (c *Client) Run(ctx context.Context, cmd string, stdout io.Writer) error {
	s, err := c.newSession(ctx)
	if err != nil {
		return fmt.Errorf("remote: %s: new session for %q: %w", c.cfg.Address, cmd, err)
	}
	defer s.Close()
	var stderr capped
	stderr.max = 64 << 10
	s.Stdout = stdout
	s.Stderr = &stderr
	done := make(chan error, 1)
	go func() { done <- s.Run(cmd) }()
	select {
	case <-ctx.Done():
		s.Close()
		return fmt.Errorf("remote: %s: %q: %w", c.cfg.Address, cmd, context.Cause(ctx))
	case err := <-done:
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			return &ExitError{Cmd: cmd, Status: ee.ExitStatus(), Stderr: strings.TrimSpace(stderr.String())}
		}
		if err != nil {
			return fmt.Errorf("remote: %s: %q: %w", c.cfg.Address, cmd, err)
		}
		return nil
	}
}

// newSession opens a session, or gives up when ctx ends: over a dead link
// the payload never answers the request. A session that opens after that
// is closed at once.
func (c *Client) newSession(ctx context.Context) (*ssh.Session, error) {
	type result struct {
		s   *ssh.Session
		err error
	}
	opened := make(chan result, 1)
	go func() {
		s, err := c.conn.NewSession()
		opened <- result{s, err}
	}()
	select {
	case r := <-opened:
		return r.s, r.err
	case <-ctx.Done():
		go func() {
			if r := <-opened; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, context.Cause(ctx)
	}
}

// capped keeps the first max bytes written to it. The buffer is a named
// field, not embedded: an embedded bytes.Buffer would promote ReadFrom,
// which io.Copy prefers to Write, and nothing would be capped.
type capped struct {
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (c *capped) String() string { return c.buf.String() }

func (c *Client) sftpClient() (*sftp.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sftp != nil {
		return c.sftp, nil
	}
	sc, err := sftp.NewClient(c.conn,
		sftp.UseConcurrentReads(true),
		sftp.UseConcurrentWrites(true),
		sftp.MaxConcurrentRequestsPerFile(64))
	if err != nil {
		return nil, fmt.Errorf("remote: %s: sftp: %w", c.cfg.Address, err)
	}
	c.sftp = sc
	return sc, nil
}

// withCtx runs f and aborts the whole connection if ctx ends first: an
// SFTP call has no context, and a dead link must not hang the bus.
func (c *Client) withCtx(ctx context.Context, f func(*sftp.Client) error) error {
	// Armed before the SFTP session is opened, which waits for the
	// payload's answer too.
	stop := context.AfterFunc(ctx, func() { c.conn.Close() })
	sc, err := c.sftpClient()
	if err == nil {
		err = f(sc)
	}
	if !stop() {
		return fmt.Errorf("remote: %s: %w", c.cfg.Address, context.Cause(ctx))
	}
	return err
}

// Put writes r to name on the payload with mode. It writes a temporary
// file (.hil-partial-<random>) in the same directory and renames it, so
// the payload never sees a partial file under name.
func (c *Client) Put(ctx context.Context, name string, r io.Reader, mode fs.FileMode) error {
	return c.withCtx(ctx, func(sc *sftp.Client) error {
		if err := sc.MkdirAll(path.Dir(name)); err != nil {
			return fmt.Errorf("remote: %s: mkdir %s: %w", c.cfg.Address, path.Dir(name), err)
		}
		// A fixed-length temporary name, so that a name of NAME_MAX bytes
		// can still be written.
		var rnd [6]byte
		rand.Read(rnd[:])
		tmp := path.Join(path.Dir(name), ".hil-partial-"+hex.EncodeToString(rnd[:]))
		f, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			return fmt.Errorf("remote: %s: create %s: %w", c.cfg.Address, tmp, err)
		}
		_, err = f.ReadFrom(r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = sc.Chmod(tmp, mode)
		}
		if err == nil {
			err = sc.PosixRename(tmp, name)
		}
		if err != nil {
			sc.Remove(tmp)
			return fmt.Errorf("remote: %s: put %s: %w", c.cfg.Address, name, err)
		}
		return nil
	})
}

// Get copies the payload file name to w and returns the bytes copied.
func (c *Client) Get(ctx context.Context, name string, w io.Writer) (int64, error) {
	var n int64
	err := c.withCtx(ctx, func(sc *sftp.Client) error {
		f, err := sc.Open(name)
		if err != nil {
			return fmt.Errorf("remote: %s: open %s: %w", c.cfg.Address, name, err)
		}
		defer f.Close()
		n, err = f.WriteTo(w)
		if err != nil {
			return fmt.Errorf("remote: %s: read %s: %w", c.cfg.Address, name, err)
		}
		return nil
	})
	return n, err
}

// ReadFile returns the whole payload file name; for small files.
func (c *Client) ReadFile(ctx context.Context, name string) ([]byte, error) {
	var b bytes.Buffer
	_, err := c.Get(ctx, name, &b)
	return b.Bytes(), err
}

// ReadDir lists the payload directory name.
func (c *Client) ReadDir(ctx context.Context, name string) ([]fs.FileInfo, error) {
	var fis []fs.FileInfo
	err := c.withCtx(ctx, func(sc *sftp.Client) (err error) {
		fis, err = sc.ReadDir(name)
		if err != nil {
			return fmt.Errorf("remote: %s: list %s: %w", c.cfg.Address, name, err)
		}
		return nil
	})
	return fis, err
}

// Stat describes the payload file name.
func (c *Client) Stat(ctx context.Context, name string) (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := c.withCtx(ctx, func(sc *sftp.Client) (err error) {
		fi, err = sc.Stat(name)
		if err != nil {
			return fmt.Errorf("remote: %s: stat %s: %w", c.cfg.Address, name, err)
		}
		return nil
	})
	return fi, err
}

// Lstat describes the payload file name without following a final
// symbolic link.
func (c *Client) Lstat(ctx context.Context, name string) (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := c.withCtx(ctx, func(sc *sftp.Client) (err error) {
		fi, err = sc.Lstat(name)
		if err != nil {
			return fmt.Errorf("remote: %s: lstat %s: %w", c.cfg.Address, name, err)
		}
		return nil
	})
	return fi, err
}

// ReadLink returns the target of the payload's symbolic link name.
func (c *Client) ReadLink(ctx context.Context, name string) (string, error) {
	var target string
	err := c.withCtx(ctx, func(sc *sftp.Client) (err error) {
		target, err = sc.ReadLink(name)
		if err != nil {
			return fmt.Errorf("remote: %s: readlink %s: %w", c.cfg.Address, name, err)
		}
		return nil
	})
	return target, err
}

// Remove deletes the payload file name.
func (c *Client) Remove(ctx context.Context, name string) error {
	return c.withCtx(ctx, func(sc *sftp.Client) error {
		if err := sc.Remove(name); err != nil {
			return fmt.Errorf("remote: %s: remove %s: %w", c.cfg.Address, name, err)
		}
		return nil
	})
}
