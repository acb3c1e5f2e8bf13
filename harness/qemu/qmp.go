package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// qmp is a QEMU Machine Protocol connection: JSON lines over a unix
// socket. One command at a time; asynchronous events are skipped.
type qmp struct {
	conn net.Conn
	r    *bufio.Reader
}

// dialQMP connects to the socket and leaves capabilities negotiation
// done, so that commands can be sent.
func dialQMP(ctx context.Context, path string) (*qmp, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	q := &qmp{conn: conn, r: bufio.NewReader(conn)}
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := q.read(ctx, &greeting); err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if greeting.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("greeting: not a QMP server")
	}
	if err := q.run(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmp) Close() error { return q.conn.Close() }

// read reads the next line that is not an event into v.
func (q *qmp) read(ctx context.Context, v any) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	q.conn.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { q.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return err
		}
		var probe struct {
			Event string `json:"event"`
		}
		if json.Unmarshal(line, &probe) == nil && probe.Event != "" {
			continue
		}
		return json.Unmarshal(line, v)
	}
}

// run executes one command and decodes its return value into ret (nil:
// ignored).
func (q *qmp) run(ctx context.Context, command string, ret any) error {
	req, _ := json.Marshal(map[string]string{"execute": command})
	q.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := q.conn.Write(append(req, '\n')); err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	var resp struct {
		Return json.RawMessage `json:"return"`
		Error  *struct {
			Class string `json:"class"`
			Desc  string `json:"desc"`
		} `json:"error"`
	}
	if err := q.read(ctx, &resp); err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("qmp %s: %s: %s", command, resp.Error.Class, resp.Error.Desc)
	}
	if ret != nil {
		if err := json.Unmarshal(resp.Return, ret); err != nil {
			return fmt.Errorf("qmp %s: %w", command, err)
		}
	}
	return nil
}
