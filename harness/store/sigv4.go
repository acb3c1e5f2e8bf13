package store

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/johannesboyne/gofakes3"
)

// The embedded endpoint checks AWS Signature Version 4 itself, because
// gofakes3 checks no signatures and decodes aws-chunked bodies only on
// single PUTs (a multipart part kept its chunk framing: silent corruption).
// Here every request must be signed with the endpoint's key, and a chunked
// body is decoded, chunk signature by chunk signature, before gofakes3
// sees it.

const (
	sigAlgorithm     = "AWS4-HMAC-SHA256"
	streamingPayload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	unsignedPayload  = "UNSIGNED-PAYLOAD"
	emptySHA256      = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// sigV4 is an http.Handler that admits requests signed with one key and
// hands them to next with a plain body.
type sigV4 struct {
	accessKey, secretKey, region string
	next                         http.Handler
	logf                         func(string, ...any)
}

func (a *sigV4) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := a.check(r)
	if err != nil {
		a.logf("store: embedded: %s %s: %v", r.Method, r.URL.Path, err)
		code := "SignatureDoesNotMatch"
		if r.Header.Get("Authorization") == "" {
			code = "AccessDenied"
		}
		writeError(w, r, http.StatusForbidden, code, err.Error())
		return
	}
	r = r.Clone(r.Context())
	switch sha := r.Header.Get("X-Amz-Content-Sha256"); {
	case sha == streamingPayload:
		n, err := strconv.ParseInt(r.Header.Get("X-Amz-Decoded-Content-Length"), 10, 64)
		if err != nil || n < 0 {
			writeError(w, r, http.StatusBadRequest, "InvalidArgument", "bad x-amz-decoded-content-length")
			return
		}
		r.Body = &chunkReader{r: bufio.NewReader(r.Body), c: c, prev: c.signature, hash: sha256.New()}
		r.ContentLength = n
		r.Header.Set("Content-Length", strconv.FormatInt(n, 10))
		r.Header.Del("X-Amz-Decoded-Content-Length")
		// gofakes3 must not decode again.
		r.Header.Set("X-Amz-Content-Sha256", unsignedPayload)
		// aws-chunked describes the transfer, not the object.
		var enc []string
		for _, e := range strings.Split(r.Header.Get("Content-Encoding"), ",") {
			if e = strings.TrimSpace(e); e != "" && e != "aws-chunked" {
				enc = append(enc, e)
			}
		}
		if len(enc) == 0 {
			r.Header.Del("Content-Encoding")
		} else {
			r.Header.Set("Content-Encoding", strings.Join(enc, ","))
		}
	case sha == unsignedPayload:
	case strings.HasPrefix(sha, "STREAMING-"):
		// Trailer variants: minio-go sends them only with TrailingHeaders
		// set. Refuse rather than store framing as data.
		writeError(w, r, http.StatusNotImplemented, "NotImplemented", "x-amz-content-sha256 "+sha+" is not supported")
		return
	default:
		want, err := hex.DecodeString(sha)
		if err != nil || len(want) != sha256.Size {
			writeError(w, r, http.StatusBadRequest, "InvalidArgument", "bad x-amz-content-sha256")
			return
		}
		r.Body = &sumReader{r: r.Body, hash: sha256.New(), want: want}
	}
	a.next.ServeHTTP(w, r)
}

// credential is what a verified request was signed with; the body's chunk
// signatures chain from it.
type credential struct {
	key       []byte // signing key
	date      string // x-amz-date
	scope     string // date/region/s3/aws4_request
	signature string // the request's signature, hex
}

// check verifies r's Authorization header.
func (a *sigV4) check(r *http.Request) (*credential, error) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		if r.URL.Query().Has("X-Amz-Signature") {
			return nil, errors.New("presigned URLs are not supported")
		}
		return nil, errors.New("request is not signed")
	}
	rest, ok := strings.CutPrefix(auth, sigAlgorithm+" ")
	if !ok {
		return nil, errors.New("authorization is not " + sigAlgorithm)
	}
	var cred, signed, sig string
	for _, f := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		switch k {
		case "Credential":
			cred = v
		case "SignedHeaders":
			signed = v
		case "Signature":
			sig = v
		}
	}
	// access-key/yyyymmdd/region/service/aws4_request
	parts := strings.Split(cred, "/")
	if len(parts) != 5 || parts[3] != "s3" || parts[4] != "aws4_request" {
		return nil, fmt.Errorf("malformed credential %q", cred)
	}
	if !hmac.Equal([]byte(parts[0]), []byte(a.accessKey)) {
		return nil, errors.New("unknown access key")
	}
	if parts[2] != a.region {
		return nil, fmt.Errorf("region %q, want %q", parts[2], a.region)
	}
	date := r.Header.Get("X-Amz-Date")
	if len(date) < 8 || date[:8] != parts[1] {
		return nil, fmt.Errorf("x-amz-date %q does not match credential date %q", date, parts[1])
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload == "" {
		return nil, errors.New("x-amz-content-sha256 is missing")
	}

	var canon strings.Builder
	canon.WriteString(r.Method + "\n")
	canon.WriteString(uriEncode(r.URL.Path, "/") + "\n")
	canon.WriteString(canonicalQuery(r.URL.Query()) + "\n")
	for _, h := range strings.Split(signed, ";") {
		canon.WriteString(h + ":")
		if h == "host" {
			canon.WriteString(r.Host)
		}
		for i, v := range r.Header.Values(h) {
			if i > 0 {
				canon.WriteByte(',')
			}
			canon.WriteString(strings.Join(strings.Fields(v), " "))
		}
		canon.WriteByte('\n')
	}
	canon.WriteString("\n" + signed + "\n" + payload)

	c := &credential{
		key:   signingKey(a.secretKey, parts[1], a.region),
		date:  date,
		scope: strings.Join(parts[1:], "/"),
	}
	c.signature = c.sign(sigAlgorithm, sha256Hex([]byte(canon.String())))
	if !hmac.Equal([]byte(sig), []byte(c.signature)) {
		return nil, errors.New("signature does not match")
	}
	return c, nil
}

// sign returns the signature of a string to sign made of algo, the
// credential's date and scope, and lines.
func (c *credential) sign(algo string, lines ...string) string {
	s := algo + "\n" + c.date + "\n" + c.scope + "\n" + strings.Join(lines, "\n")
	return hex.EncodeToString(hmacSHA256(c.key, s))
}

func signingKey(secret, date, region string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, "s3")
	return hmacSHA256(k, "aws4_request")
}

func hmacSHA256(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// uriEncode escapes s as SigV4 wants: every byte as %XX but A-Z a-z 0-9
// - _ . ~ and those in keep.
func uriEncode(s, keep string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("-_.~"+keep, c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// canonicalQuery returns q escaped and sorted by name, then value.
func canonicalQuery(q url.Values) string {
	enc := make(map[string][]string, len(q))
	for k, vs := range q {
		ek := uriEncode(k, "")
		for _, v := range vs {
			enc[ek] = append(enc[ek], uriEncode(v, ""))
		}
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(enc)) {
		vs := enc[k]
		slices.Sort(vs)
		for _, v := range vs {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(k + "=" + v)
		}
	}
	return b.String()
}

// chunkReader decodes an aws-chunked body:
//
//	hex-size;chunk-signature=sig\r\n data \r\n ... 0;chunk-signature=sig\r\n\r\n
//
// Data is passed on as it arrives, so memory does not grow with the chunk
// size; each chunk's signature is checked when its data ends, and the body
// ends (io.EOF) only after the final, empty chunk checked out. A consumer
// that reads to EOF has therefore read only signed data.
type chunkReader struct {
	r       *bufio.Reader
	c       *credential
	prev    string    // signature of the previous chunk
	hash    hash.Hash // of the current chunk's data
	want    string    // signature of the current chunk
	remain  int64     // data left in the current chunk
	inChunk bool
	final   bool
	err     error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for c.err == nil && c.remain == 0 {
		c.err = c.next()
	}
	if c.err != nil {
		return 0, c.err
	}
	if int64(len(p)) > c.remain {
		p = p[:c.remain]
	}
	n, err := c.r.Read(p)
	c.hash.Write(p[:n])
	c.remain -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	c.err = err
	return n, err
}

// next finishes the current chunk and starts the next one.
func (c *chunkReader) next() error {
	if c.inChunk {
		if err := c.crlf(); err != nil {
			return err
		}
		got := c.c.sign("AWS4-HMAC-SHA256-PAYLOAD", c.prev, emptySHA256, hex.EncodeToString(c.hash.Sum(nil)))
		if !hmac.Equal([]byte(got), []byte(c.want)) {
			return gofakes3.ErrorMessage(gofakes3.ErrBadDigest, "chunk signature does not match")
		}
		c.prev, c.inChunk = got, false
		if c.final {
			switch _, err := c.r.ReadByte(); err {
			case nil:
				return malformed("data after the final chunk")
			case io.EOF:
				return io.EOF
			default:
				return err
			}
		}
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return malformedOrCut(err, "chunk header")
	}
	size, sig, ok := bytes.Cut(bytes.TrimSuffix(line, []byte("\r\n")), []byte(";chunk-signature="))
	n, err := strconv.ParseUint(string(size), 16, 62)
	if !ok || err != nil || len(sig) != 64 {
		return malformed(fmt.Sprintf("chunk header %.80q", line))
	}
	c.remain, c.want, c.final, c.inChunk = int64(n), string(sig), n == 0, true
	c.hash.Reset()
	return nil
}

func (c *chunkReader) crlf() error {
	var b [2]byte
	if _, err := io.ReadFull(c.r, b[:]); err != nil {
		return malformedOrCut(err, "chunk end")
	}
	if b != [2]byte{'\r', '\n'} {
		return malformed("chunk data longer than its size")
	}
	return nil
}

func (c *chunkReader) Close() error { return nil } // the server closes the request body

func malformed(what string) error {
	return gofakes3.ErrorMessage(gofakes3.ErrIncompleteBody, "malformed aws-chunked body: "+what)
}

func malformedOrCut(err error, what string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return io.ErrUnexpectedEOF
	}
	if err == bufio.ErrBufferFull {
		return malformed(what + " too long")
	}
	return err
}

// sumReader fails at EOF if the body's SHA-256 is not the one signed.
type sumReader struct {
	r    io.ReadCloser
	hash hash.Hash
	want []byte
}

func (s *sumReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.hash.Write(p[:n])
	if err == io.EOF && !bytes.Equal(s.hash.Sum(nil), s.want) {
		err = gofakes3.ErrorMessage(gofakes3.ErrBadDigest, "body does not match x-amz-content-sha256")
	}
	return n, err
}

func (s *sumReader) Close() error { return s.r.Close() }

// writeError writes an S3 error document.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	io.WriteString(w, xml.Header)
	xml.NewEncoder(w).Encode(struct {
		XMLName  xml.Name `xml:"Error"`
		Code     string
		Message  string
		Resource string
	}{Code: code, Message: msg, Resource: r.URL.Path})
}
