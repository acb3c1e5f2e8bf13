// Package store puts downlinked files into S3 and checks what landed.
// One client (minio-go) talks to every endpoint; the embedded endpoint is
// an in-process S3 server on loopback, the zero-setup default, and MinIO
// is the real server, run as a child process where it is installed. Both
// are a Server, which can be stopped and started under its clients.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"time"
)

// Object describes one stored object.
type Object struct {
	Bucket       string
	Key          string
	Size         int64
	ETag         string
	ContentType  string
	Metadata     map[string]string // user metadata, keys lower-case without the x-amz-meta- prefix
	LastModified time.Time
}

// PutOptions describe an object being written.
type PutOptions struct {
	ContentType string            // default application/octet-stream
	Metadata    map[string]string // user metadata
}

// Store is an S3 bucket namespace.
type Store interface {
	// Put writes exactly size bytes from r to bucket/key. The object is
	// visible only when whole: a failed Put leaves nothing behind.
	// A reader that holds fewer or more than size bytes fails the Put.
	Put(ctx context.Context, bucket, key string, r io.Reader, size int64, opts PutOptions) (Object, error)
	// Stat describes an object, with its content type and user metadata.
	// IsNotFound(err) reports a missing bucket or key.
	Stat(ctx context.Context, bucket, key string) (Object, error)
	// Get opens an object for reading. IsNotFound(err) reports a missing
	// bucket or key.
	Get(ctx context.Context, bucket, key string) (io.ReadCloser, error)
	// List returns every object under prefix, recursively, sorted by key.
	// Listings carry neither content type nor user metadata.
	List(ctx context.Context, bucket, prefix string) ([]Object, error)
	// EnsureBucket creates bucket if it does not exist.
	EnsureBucket(ctx context.Context, bucket string) error
}

// SHA256 reads the object back and returns the hex SHA-256 of its bytes:
// what a check that something landed byte for byte compares.
func SHA256(ctx context.Context, s Store, bucket, key string) (string, error) {
	r, err := s.Get(ctx, bucket, key)
	if err != nil {
		return "", err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("store: read back s3://%s/%s: %w", bucket, key, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
