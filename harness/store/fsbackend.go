package store

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
)

// fsBackend is a gofakes3 backend that streams objects to files, so the
// embedded endpoint's memory does not grow with object size (gofakes3's own
// backends and multipart uploader hold whole bodies in memory).
//
// Layout under the data directory:
//
//	buckets/<bucket>/<sha256 of key>  object: data, then its JSON metadata, then the metadata's length (8 bytes, big-endian)
//	tmp/                              objects and parts being written
//	uploads/<upload id>/<part number> parts of multipart uploads
//
// An object is written under tmp/ and renamed into place, so it appears
// only when whole, and replacing it is atomic. Keys are hashed so that no
// key can name a path outside the bucket or clash with another. Multipart
// uploads in progress are known only to the process that started them.
type fsBackend struct {
	dir string

	mu      sync.Mutex // guards uploads, and orders conditional commits
	uploads map[gofakes3.UploadID]*upload
}

type upload struct {
	bucket, key string
	header      map[string]string
	parts       map[int]part
}

type part struct {
	md5  []byte
	size int64
}

// objectMeta trails each object's data.
type objectMeta struct {
	Key      string            `json:"key"`
	Size     int64             `json:"size"`
	ETag     []byte            `json:"etag"` // MD5 of the data, or of the parts' MD5s
	Modified time.Time         `json:"modified"`
	Header   map[string]string `json:"header"` // Content-Type, X-Amz-Meta-*, ...
}

// minPartSize is S3's smallest part but the last.
const minPartSize = 5 << 20

var (
	_ gofakes3.Backend          = (*fsBackend)(nil)
	_ gofakes3.MultipartBackend = (*fsBackend)(nil)
)

// newFSBackend opens dir, dropping what an earlier process left half
// written: uploads die with the process that started them.
func newFSBackend(dir string) (*fsBackend, error) {
	b := &fsBackend{dir: dir, uploads: make(map[gofakes3.UploadID]*upload)}
	for _, d := range []string{"tmp", "uploads"} {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{"buckets", "tmp", "uploads"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// bucketDir returns the directory of bucket, or an error if the name is
// not a bucket name (and so might be a path such as "..").
func (b *fsBackend) bucketDir(bucket string) (string, error) {
	if gofakes3.ValidateBucketName(bucket) != nil {
		return "", gofakes3.BucketNotFound(bucket)
	}
	return filepath.Join(b.dir, "buckets", bucket), nil
}

// objectPath returns the file of bucket/key, or an error if the bucket
// does not exist.
func (b *fsBackend) objectPath(bucket, key string) (string, error) {
	dir, err := b.bucketDir(bucket)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(dir); err != nil {
		return "", bucketError(bucket, err)
	}
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(dir, hex.EncodeToString(sum[:])), nil
}

func bucketError(bucket string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return gofakes3.BucketNotFound(bucket)
	}
	return err
}

func (b *fsBackend) ListBuckets() ([]gofakes3.BucketInfo, error) {
	ents, err := os.ReadDir(filepath.Join(b.dir, "buckets"))
	if err != nil {
		return nil, err
	}
	var out []gofakes3.BucketInfo
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, gofakes3.BucketInfo{Name: e.Name(), CreationDate: gofakes3.NewContentTime(fi.ModTime())})
	}
	return out, nil
}

func (b *fsBackend) CreateBucket(name string) error {
	dir, err := b.bucketDir(name)
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); errors.Is(err, fs.ErrExist) {
		return gofakes3.ResourceError(gofakes3.ErrBucketAlreadyExists, name)
	} else if err != nil {
		return err
	}
	return nil
}

func (b *fsBackend) BucketExists(name string) (bool, error) {
	dir, err := b.bucketDir(name)
	if err != nil {
		return false, nil
	}
	_, err = os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func (b *fsBackend) DeleteBucket(name string) error {
	dir, err := b.bucketDir(name)
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return bucketError(name, err)
	}
	if len(ents) > 0 {
		return gofakes3.ResourceError(gofakes3.ErrBucketNotEmpty, name)
	}
	return os.Remove(dir)
}

func (b *fsBackend) ForceDeleteBucket(name string) error {
	dir, err := b.bucketDir(name)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir); err != nil {
		return bucketError(name, err)
	}
	return os.RemoveAll(dir)
}

func (b *fsBackend) ListBucket(bucket string, prefix *gofakes3.Prefix, page gofakes3.ListBucketPage) (*gofakes3.ObjectList, error) {
	dir, err := b.bucketDir(bucket)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, bucketError(bucket, err)
	}
	var metas []*objectMeta
	for _, e := range ents {
		m, err := readMeta(filepath.Join(dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		} else if err != nil {
			return nil, err
		}
		metas = append(metas, m)
	}
	slices.SortFunc(metas, func(a, b *objectMeta) int { return strings.Compare(a.Key, b.Key) })

	if prefix == nil {
		prefix = &gofakes3.Prefix{}
	}
	list := gofakes3.NewObjectList()
	var match gofakes3.PrefixMatch
	var n int64
	last := ""
	for _, m := range metas {
		if !prefix.Match(m.Key, &match) {
			continue
		}
		name := m.Key
		if match.CommonPrefix {
			name = match.MatchedPart
		}
		// The marker is the last key or common prefix already listed; keys
		// under one common prefix are adjacent.
		if page.HasMarker && name <= page.Marker || n > 0 && name == last {
			continue
		}
		if page.MaxKeys > 0 && n == page.MaxKeys {
			list.IsTruncated = true
			list.NextMarker = last
			break
		}
		if match.CommonPrefix {
			list.AddPrefix(name)
		} else {
			list.Add(&gofakes3.Content{
				Key:          m.Key,
				LastModified: gofakes3.NewContentTime(m.Modified),
				ETag:         gofakes3.FormatETag(m.ETag),
				Size:         m.Size,
			})
		}
		last = name
		n++
	}
	return list, nil
}

func (b *fsBackend) HeadObject(bucket, key string) (*gofakes3.Object, error) {
	p, err := b.objectPath(bucket, key)
	if err != nil {
		return nil, err
	}
	m, err := readMeta(p)
	if err != nil {
		return nil, keyError(key, err)
	}
	return &gofakes3.Object{
		Name:     key,
		Metadata: m.header(),
		Size:     m.Size,
		Hash:     m.ETag,
		Contents: io.NopCloser(strings.NewReader("")),
	}, nil
}

func (b *fsBackend) GetObject(bucket, key string, rangeReq *gofakes3.ObjectRangeRequest) (*gofakes3.Object, error) {
	p, err := b.objectPath(bucket, key)
	if err != nil {
		return nil, err
	}
	// The open file stays readable if the object is replaced meanwhile.
	f, err := os.Open(p)
	if err != nil {
		return nil, keyError(key, err)
	}
	m, err := fileMeta(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	rng, err := rangeReq.Range(m.Size)
	if err != nil {
		f.Close()
		return nil, err
	}
	start, n := int64(0), m.Size
	if rng != nil {
		start, n = rng.Start, rng.Length
	}
	return &gofakes3.Object{
		Name:     key,
		Metadata: m.header(),
		Size:     m.Size,
		Hash:     m.ETag,
		Range:    rng,
		Contents: struct {
			io.Reader
			io.Closer
		}{io.NewSectionReader(f, start, n), f},
	}, nil
}

func keyError(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return gofakes3.KeyNotFound(key)
	}
	return err
}

func (b *fsBackend) DeleteObject(bucket, key string) (gofakes3.ObjectDeleteResult, error) {
	p, err := b.objectPath(bucket, key)
	if err != nil {
		return gofakes3.ObjectDeleteResult{}, err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return gofakes3.ObjectDeleteResult{}, err
	}
	return gofakes3.ObjectDeleteResult{}, nil
}

func (b *fsBackend) DeleteMulti(bucket string, keys ...string) (gofakes3.MultiDeleteResult, error) {
	var res gofakes3.MultiDeleteResult
	for _, k := range keys {
		if _, err := b.DeleteObject(bucket, k); err != nil {
			res.Error = append(res.Error, gofakes3.ErrorResultFromError(err))
			continue
		}
		res.Deleted = append(res.Deleted, gofakes3.ObjectID{Key: k})
	}
	return res, nil
}

func (b *fsBackend) PutObject(bucket, key string, header map[string]string, r io.Reader, size int64, cond *gofakes3.PutConditions) (gofakes3.PutObjectResult, error) {
	p, err := b.objectPath(bucket, key)
	if err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	f, err := b.tempFile()
	if err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	defer cleanup(f)
	h := md5.New()
	if err := copyExact(io.MultiWriter(f, h), r, size); err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	return gofakes3.PutObjectResult{}, b.commit(f, p, key, size, h.Sum(nil), header, cond)
}

func (b *fsBackend) CopyObject(srcBucket, srcKey, dstBucket, dstKey string, header map[string]string) (gofakes3.CopyObjectResult, error) {
	src, err := b.GetObject(srcBucket, srcKey, nil)
	if err != nil {
		return gofakes3.CopyObjectResult{}, err
	}
	defer src.Contents.Close()
	if _, err := b.PutObject(dstBucket, dstKey, header, src.Contents, src.Size, nil); err != nil {
		return gofakes3.CopyObjectResult{}, err
	}
	o, err := b.HeadObject(dstBucket, dstKey)
	if err != nil {
		return gofakes3.CopyObjectResult{}, err
	}
	t, _ := time.Parse(http.TimeFormat, o.Metadata["Last-Modified"])
	return gofakes3.CopyObjectResult{ETag: gofakes3.FormatETag(o.Hash), LastModified: gofakes3.NewContentTime(t)}, nil
}

func (b *fsBackend) CreateMultipartUpload(bucket, key string, header map[string]string) (gofakes3.UploadID, error) {
	if _, err := b.objectPath(bucket, key); err != nil {
		return "", err
	}
	id := gofakes3.UploadID(rand.Text())
	if err := os.Mkdir(filepath.Join(b.dir, "uploads", string(id)), 0o755); err != nil {
		return "", err
	}
	b.mu.Lock()
	b.uploads[id] = &upload{bucket: bucket, key: key, header: header, parts: make(map[int]part)}
	b.mu.Unlock()
	return id, nil
}

// lookup returns the upload id of bucket/key.
func (b *fsBackend) lookup(bucket, key string, id gofakes3.UploadID) (*upload, error) {
	u := b.uploads[id]
	if u == nil || u.bucket != bucket || u.key != key {
		return nil, gofakes3.ErrNoSuchUpload
	}
	return u, nil
}

func (b *fsBackend) UploadPart(bucket, key string, id gofakes3.UploadID, n int, size int64, r io.Reader) (string, error) {
	if n < 1 || n > gofakes3.MaxUploadPartNumber {
		return "", gofakes3.ErrInvalidPart
	}
	b.mu.Lock()
	_, err := b.lookup(bucket, key, id)
	b.mu.Unlock()
	if err != nil {
		return "", err
	}
	f, err := b.tempFile()
	if err != nil {
		return "", err
	}
	defer cleanup(f)
	h := md5.New()
	if err := copyExact(io.MultiWriter(f, h), r, size); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	u, err := b.lookup(bucket, key, id) // it may have been aborted meanwhile
	if err != nil {
		return "", err
	}
	if err := os.Rename(f.Name(), b.partPath(id, n)); err != nil {
		return "", err
	}
	u.parts[n] = part{md5: h.Sum(nil), size: size}
	return gofakes3.FormatETag(u.parts[n].md5), nil
}

func (b *fsBackend) partPath(id gofakes3.UploadID, n int) string {
	return filepath.Join(b.dir, "uploads", string(id), strconv.Itoa(n))
}

// CompleteMultipartUpload joins the parts into the object. Its ETag is, as
// in AWS and MinIO, the MD5 of the parts' MD5s, but without their "-N"
// suffix (the part count): gofakes3 writes ETags as hex only.
func (b *fsBackend) CompleteMultipartUpload(bucket, key string, id gofakes3.UploadID, req *gofakes3.CompleteMultipartUploadRequest) (gofakes3.VersionID, string, error) {
	b.mu.Lock()
	u, err := b.lookup(bucket, key, id)
	if err == nil {
		err = u.check(req)
	}
	if err == nil {
		delete(b.uploads, id) // ours now: no part can be added or aborted
	}
	b.mu.Unlock()
	if err != nil {
		return "", "", err
	}

	etag, err := b.join(u, id, req)
	if err != nil {
		b.mu.Lock()
		b.uploads[id] = u // let the client retry or abort
		b.mu.Unlock()
		return "", "", err
	}
	os.RemoveAll(filepath.Join(b.dir, "uploads", string(id)))
	return "", gofakes3.FormatETag(etag), nil
}

// check reports whether req names uploaded parts, in order, that S3 would
// accept.
func (u *upload) check(req *gofakes3.CompleteMultipartUploadRequest) error {
	if len(req.Parts) == 0 {
		return gofakes3.ErrorMessage(gofakes3.ErrMalformedXML, "no parts")
	}
	for i, rp := range req.Parts {
		if i > 0 && rp.PartNumber <= req.Parts[i-1].PartNumber {
			return gofakes3.ErrInvalidPartOrder
		}
		p, ok := u.parts[rp.PartNumber]
		if !ok || strings.Trim(rp.ETag, `"`) != hex.EncodeToString(p.md5) {
			return gofakes3.ErrorMessagef(gofakes3.ErrInvalidPart, "part %d was not uploaded with ETag %s", rp.PartNumber, rp.ETag)
		}
		if i < len(req.Parts)-1 && p.size < minPartSize {
			return gofakes3.ErrorMessagef(gofakes3.ErrInvalidPart, "part %d has %d bytes; all parts but the last need at least %d (EntityTooSmall)", rp.PartNumber, p.size, minPartSize)
		}
	}
	return nil
}

// join writes the parts of req into the object and returns its ETag.
func (b *fsBackend) join(u *upload, id gofakes3.UploadID, req *gofakes3.CompleteMultipartUploadRequest) ([]byte, error) {
	p, err := b.objectPath(u.bucket, u.key)
	if err != nil {
		return nil, err
	}
	f, err := b.tempFile()
	if err != nil {
		return nil, err
	}
	defer cleanup(f)
	h := md5.New()
	var size int64
	for _, rp := range req.Parts {
		h.Write(u.parts[rp.PartNumber].md5)
		pf, err := os.Open(b.partPath(id, rp.PartNumber))
		if err != nil {
			return nil, err
		}
		// File to file: Linux copies in the kernel (copy_file_range).
		n, err := io.Copy(f, pf)
		pf.Close()
		if err != nil {
			return nil, err
		}
		size += n
	}
	etag := h.Sum(nil)
	return etag, b.commit(f, p, u.key, size, etag, u.header, nil)
}

func (b *fsBackend) AbortMultipartUpload(bucket, key string, id gofakes3.UploadID) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.lookup(bucket, key, id); err != nil {
		return err
	}
	delete(b.uploads, id)
	return os.RemoveAll(filepath.Join(b.dir, "uploads", string(id)))
}

// ListMultipartUploads and ListParts serve resuming uploads, which minio-go
// does not do.
func (b *fsBackend) ListMultipartUploads(bucket string, marker *gofakes3.UploadListMarker, prefix gofakes3.Prefix, limit int64) (*gofakes3.ListMultipartUploadsResult, error) {
	return nil, gofakes3.ErrNotImplemented
}

func (b *fsBackend) ListParts(bucket, key string, id gofakes3.UploadID, marker int, limit int64) (*gofakes3.ListMultipartUploadPartsResult, error) {
	return nil, gofakes3.ErrNotImplemented
}

func (b *fsBackend) tempFile() (*os.File, error) {
	return os.CreateTemp(filepath.Join(b.dir, "tmp"), "")
}

// cleanup closes f and removes it unless it has been renamed into place.
func cleanup(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}

// copyExact copies exactly size bytes from r and then insists on EOF, so a
// body that is short or long, or fails a check at its end (a signature or
// digest), is rejected.
func copyExact(w io.Writer, r io.Reader, size int64) error {
	if _, err := io.CopyN(w, r, size); err == io.EOF {
		return gofakes3.ErrIncompleteBody
	} else if err != nil {
		return err
	}
	var b [1]byte
	switch n, err := io.ReadFull(r, b[:]); {
	case n > 0:
		return gofakes3.ErrorMessagef(gofakes3.ErrIncompleteBody, "body is longer than %d bytes", size)
	case err == io.EOF:
		return nil
	default:
		return err
	}
}

// commit appends the metadata to f, which holds the whole data, and
// renames it to path: the object appears whole or not at all.
func (b *fsBackend) commit(f *os.File, path, key string, size int64, etag []byte, header map[string]string, cond *gofakes3.PutConditions) error {
	m := objectMeta{Key: key, Size: size, ETag: etag, Modified: time.Now().UTC().Truncate(time.Second), Header: objectHeader(header)}
	js, err := json.Marshal(m)
	if err != nil {
		return err
	}
	js = binary.BigEndian.AppendUint64(js, uint64(len(js)))
	if _, err := f.Write(js); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if cond != nil {
		info := &gofakes3.ConditionalObjectInfo{}
		if old, err := readMeta(path); err == nil {
			info.Exists, info.Hash = true, old.ETag
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := gofakes3.CheckPutConditions(cond, info); err != nil {
			return err
		}
	}
	return os.Rename(f.Name(), path)
}

// objectHeader keeps the headers that describe the object; gofakes3 also
// passes request headers such as X-Amz-Date.
func objectHeader(h map[string]string) map[string]string {
	out := make(map[string]string)
	for k, v := range h {
		switch ck := http.CanonicalHeaderKey(k); {
		case strings.HasPrefix(ck, "X-Amz-Meta-"),
			ck == "Content-Type", ck == "Content-Encoding", ck == "Content-Disposition":
			out[ck] = v
		}
	}
	if out["Content-Type"] == "" {
		out["Content-Type"] = "application/octet-stream"
	}
	return out
}

// header returns the response headers of the object.
func (m *objectMeta) header() map[string]string {
	h := make(map[string]string, len(m.Header)+1)
	for k, v := range m.Header {
		h[k] = v
	}
	h["Last-Modified"] = m.Modified.Format(http.TimeFormat)
	return h
}

func readMeta(path string) (*objectMeta, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return fileMeta(f)
}

// fileMeta reads the metadata that trails an object's data.
func fileMeta(f *os.File) (*objectMeta, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var n [8]byte
	if _, err := f.ReadAt(n[:], fi.Size()-8); err != nil {
		return nil, fmt.Errorf("object file %s: %w", f.Name(), err)
	}
	size := int64(binary.BigEndian.Uint64(n[:]))
	if size < 0 || size > fi.Size()-8 {
		return nil, fmt.Errorf("object file %s: bad metadata length %d", f.Name(), size)
	}
	js := make([]byte, size)
	if _, err := f.ReadAt(js, fi.Size()-8-size); err != nil {
		return nil, fmt.Errorf("object file %s: %w", f.Name(), err)
	}
	var m objectMeta
	if err := json.Unmarshal(js, &m); err != nil {
		return nil, fmt.Errorf("object file %s: %w", f.Name(), err)
	}
	if m.Size != fi.Size()-8-size {
		return nil, fmt.Errorf("object file %s: %d bytes of data, metadata says %d", f.Name(), fi.Size()-8-size, m.Size)
	}
	return &m, nil
}
