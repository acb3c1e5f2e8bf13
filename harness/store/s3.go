package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// DefaultRegion is the region used when Config.Region is empty. It is the
// default of MinIO and of the embedded endpoint.
const DefaultRegion = "us-east-1"

// metaPrefix is the header prefix S3 puts before user metadata keys.
const metaPrefix = "x-amz-meta-"

// Config says how to reach an S3 endpoint. The zero value is not usable,
// but every field other than Endpoint and the keys has a working default.
type Config struct {
	Endpoint  string // host:port, without a scheme
	Secure    bool   // use https
	Region    string // default DefaultRegion
	AccessKey string
	SecretKey string
}

// S3 is a Store backed by any S3 endpoint: MinIO, AWS or the embedded one.
type S3 struct {
	client *minio.Client
}

var _ Store = (*S3)(nil)

// New returns an S3 store for cfg. It does not contact the endpoint.
func New(cfg Config) (*S3, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	region := cfg.Region
	if region == "" {
		region = DefaultRegion
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.Secure,
		// A fixed region spares a GetBucketLocation round trip per bucket.
		Region: region,
	})
	if err != nil {
		return nil, fmt.Errorf("store: config: endpoint %q: %w", cfg.Endpoint, err)
	}
	return &S3{client: c}, nil
}

// validate checks cfg. Its errors never contain the secret key.
func (cfg Config) validate() error {
	if cfg.Endpoint == "" {
		return errors.New("store: config: Endpoint is empty; want host:port, e.g. 127.0.0.1:9000")
	}
	if strings.Contains(cfg.Endpoint, "://") {
		return fmt.Errorf("store: config: Endpoint %q has a scheme; want host:port, and Secure for https", cfg.Endpoint)
	}
	host, port, err := net.SplitHostPort(cfg.Endpoint)
	if err != nil {
		return fmt.Errorf("store: config: Endpoint %q is not host:port: %v", cfg.Endpoint, err)
	}
	if host == "" {
		return fmt.Errorf("store: config: Endpoint %q has no host; want host:port", cfg.Endpoint)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("store: config: Endpoint %q has port %q; want a number from 1 to 65535", cfg.Endpoint, port)
	}
	if cfg.AccessKey == "" {
		return errors.New("store: config: AccessKey is empty")
	}
	if cfg.SecretKey == "" {
		return errors.New("store: config: SecretKey is empty")
	}
	return nil
}

// Put streams size bytes from r to bucket/key and returns what the endpoint
// then reports for the object. Objects of more than 16 MiB go up as a
// multipart upload; r is read in parts of 16 MiB, so memory does not grow
// with size. Metadata keys are stored lower-case.
func (s *S3) Put(ctx context.Context, bucket, key string, r io.Reader, size int64, opts PutOptions) (Object, error) {
	if size < 0 {
		return Object{}, opError("put", bucket, key, fmt.Errorf("size %d is negative", size))
	}
	meta, err := userMetadata(opts.Metadata)
	if err != nil {
		return Object{}, opError("put", bucket, key, err)
	}
	ct := opts.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	if size == 0 {
		// minio-go sends no body, so exactReader would not look.
		var b [1]byte
		if n, _ := io.ReadFull(r, b[:]); n > 0 {
			return Object{}, opError("put", bucket, key, errors.New("reader has more than 0 bytes"))
		}
	}
	body, err := exact(r, size)
	if err != nil {
		return Object{}, opError("put", bucket, key, err)
	}
	// Defaults on purpose: over plain HTTP minio-go signs every 64 KiB
	// chunk of the body, which the embedded endpoint checks.
	_, err = s.client.PutObject(ctx, bucket, key, body, size, minio.PutObjectOptions{
		ContentType:  ct,
		UserMetadata: meta,
	})
	if err != nil {
		return Object{}, opError("put", bucket, key, err)
	}
	o, err := s.Stat(ctx, bucket, key)
	if err != nil {
		return Object{}, err
	}
	if o.Size != size {
		return o, opError("put", bucket, key, fmt.Errorf("stored %d bytes, want %d", o.Size, size))
	}
	return o, nil
}

// exact returns a reader of exactly size bytes from r, or fails. A file
// is checked up front and read through a section, so minio-go sees an
// io.ReaderAt and uploads its parts in parallel.
func exact(r io.Reader, size int64) (io.Reader, error) {
	f, ok := r.(*os.File)
	if !ok {
		return &exactReader{r: r, size: size}, nil
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil || !fi.Mode().IsRegular() {
		return &exactReader{r: r, size: size}, nil // a pipe or device: read it as a stream
	}
	if left := fi.Size() - off; left != size {
		return nil, fmt.Errorf("file %s holds %d bytes from offset %d, want %d", f.Name(), left, off, size)
	}
	return io.NewSectionReader(f, off, size), nil
}

// exactReader fails unless r holds exactly size bytes. minio-go would
// otherwise store a prefix of a longer reader without complaint, and send
// the short part of a shorter one again and again.
type exactReader struct {
	r         io.Reader
	size, off int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.off == e.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), e.size-e.off)]
	n, err := e.r.Read(p)
	e.off += int64(n)
	switch {
	case err == io.EOF && e.off < e.size:
		return n, fmt.Errorf("reader ended after %d of %d bytes", e.off, e.size)
	case err != nil && err != io.EOF:
		return n, err
	case e.off == e.size:
		// Look for more now, as minio-go stops reading at size, and fail
		// without the last bytes: io.ReadFull drops an error that comes
		// with the bytes it wanted.
		var b [1]byte
		if m, _ := io.ReadFull(e.r, b[:]); m > 0 {
			return 0, fmt.Errorf("reader has more than %d bytes", e.size)
		}
	}
	return n, nil
}

// userMetadata turns PutOptions.Metadata into minio-go's form. The
// x-amz-meta- prefix is added here so that minio-go cannot mistake a key
// such as "content-type" for a standard header.
func userMetadata(m map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if !isToken(k) {
			return nil, fmt.Errorf("metadata key %q is not an HTTP token", k)
		}
		if !isPrintableASCII(v) {
			return nil, fmt.Errorf("metadata %q: value %q is not printable ASCII", k, v)
		}
		out[metaPrefix+strings.ToLower(k)] = v
	}
	return out, nil
}

// Stat returns the object's description, including content type and user
// metadata.
func (s *S3) Stat(ctx context.Context, bucket, key string) (Object, error) {
	info, err := s.client.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return Object{}, opError("stat", bucket, key, err)
	}
	o := object(bucket, info)
	o.ContentType = info.ContentType
	o.Metadata = make(map[string]string, len(info.UserMetadata))
	for k, v := range info.UserMetadata {
		k = strings.ToLower(k)
		o.Metadata[strings.TrimPrefix(k, metaPrefix)] = v
	}
	return o, nil
}

// Get opens the object for reading. A missing object is reported here, not
// on the first Read.
func (s *S3) Get(ctx context.Context, bucket, key string) (io.ReadCloser, error) {
	obj, err := s.client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, opError("get", bucket, key, err)
	}
	// GetObject is lazy; Stat sends the request.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, opError("get", bucket, key, err)
	}
	return &reader{obj: obj, bucket: bucket, key: key}, nil
}

// reader adds the bucket and key to read errors.
type reader struct {
	obj         *minio.Object
	bucket, key string
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.obj.Read(p)
	if err != nil && err != io.EOF {
		err = opError("get", r.bucket, r.key, err)
	}
	return n, err
}

func (r *reader) Close() error { return r.obj.Close() }

// List returns every object under prefix, sorted by key. S3 listings carry
// neither content type nor user metadata: use Stat for those.
func (s *S3) List(ctx context.Context, bucket, prefix string) ([]Object, error) {
	// Cancelling stops minio-go's listing goroutine if we return early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var objs []Object
	for info := range s.client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if info.Err != nil {
			return nil, opError("list", bucket, prefix, info.Err)
		}
		objs = append(objs, object(bucket, info))
	}
	// S3 already lists in key order; sorting makes it the contract.
	slices.SortFunc(objs, func(a, b Object) int { return strings.Compare(a.Key, b.Key) })
	return objs, nil
}

func object(bucket string, info minio.ObjectInfo) Object {
	return Object{
		Bucket:       bucket,
		Key:          info.Key,
		Size:         info.Size,
		ETag:         info.ETag,
		LastModified: info.LastModified,
	}
}

// EnsureBucket creates bucket if it does not exist.
func (s *S3) EnsureBucket(ctx context.Context, bucket string) error {
	ok, err := s.client.BucketExists(ctx, bucket)
	if err != nil {
		return fmt.Errorf("store: ensure bucket s3://%s: %w", bucket, err)
	}
	if ok {
		return nil
	}
	if err := s.client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		// Someone else may have created it since we looked.
		if ok, err2 := s.client.BucketExists(ctx, bucket); err2 == nil && ok {
			return nil
		}
		return fmt.Errorf("store: ensure bucket s3://%s: %w", bucket, err)
	}
	return nil
}

// IsNotFound reports whether err says that a bucket or object does not
// exist.
func IsNotFound(err error) bool {
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) {
		return false
	}
	switch resp.Code {
	case "NoSuchKey", "NoSuchBucket", "NotFound":
		return true
	}
	return resp.StatusCode == http.StatusNotFound
}

func opError(op, bucket, key string, err error) error {
	return fmt.Errorf("store: %s s3://%s/%s: %w", op, bucket, key, err)
}

// isToken reports whether s is an HTTP header field name (RFC 9110 token).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
