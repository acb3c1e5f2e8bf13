package pi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// OutboundPath checks rel, a StageFileDownload file_path, and returns the
// payload path it names inside OutboundDir. It refuses what could name a
// file elsewhere before anything is read: an empty or absolute path, a
// ".." segment, or a NUL byte. Symbolic links are ResolveOutbound's.
func OutboundPath(rel string) (string, error) {
	switch {
	case rel == "":
		return "", errors.New("file_path is empty; want a path relative to " + OutboundDir)
	case strings.HasPrefix(rel, "/"):
		return "", fmt.Errorf("file_path %q is absolute; want a path relative to %s", rel, OutboundDir)
	case strings.ContainsRune(rel, 0):
		return "", fmt.Errorf("file_path %q holds a NUL byte", rel)
	}
	for _, seg := range strings.Split(rel, "/") {
		if seg == ".." {
			return "", fmt.Errorf("file_path %q has a \"..\" segment; want a path inside %s", rel, OutboundDir)
		}
	}
	full := path.Join(OutboundDir, rel)
	if full == OutboundDir {
		return "", fmt.Errorf("file_path %q names %s itself; want a file inside it", rel, OutboundDir)
	}
	return full, nil
}

// LinkFS is what ResolveOutbound needs of the payload's filesystem: the
// SFTP client of a board is one.
type LinkFS interface {
	Lstat(ctx context.Context, name string) (fs.FileInfo, error)
	ReadLink(ctx context.Context, name string) (string, error)
}

// maxLinks bounds the symbolic links followed while resolving one path,
// as the kernel's ELOOP limit does.
const maxLinks = 40

// ResolveOutbound follows full, a path OutboundPath returned, on the
// payload one segment at a time, and returns the regular file it names.
// A symbolic link anywhere on the way may point only inside OutboundDir;
// one that leads out is refused before the file is opened.
func ResolveOutbound(ctx context.Context, fsys LinkFS, full string) (string, error) {
	rest := strings.Split(strings.TrimPrefix(full, OutboundDir+"/"), "/")
	cur := OutboundDir
	links := 0
	for len(rest) > 0 {
		seg := rest[0]
		rest = rest[1:]
		if seg == "" || seg == "." {
			continue
		}
		if seg == ".." {
			cur = path.Dir(cur)
			if !inside(cur) {
				return "", fmt.Errorf("%s leads out of %s", full, OutboundDir)
			}
			continue
		}
		next := path.Join(cur, seg)
		fi, err := fsys.Lstat(ctx, next)
		if err != nil {
			return "", fmt.Errorf("%s: %w", next, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if len(rest) > 0 && !fi.IsDir() {
				return "", fmt.Errorf("%s is not a directory", next)
			}
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: more than %d symbolic links", full, maxLinks)
		}
		target, err := fsys.ReadLink(ctx, next)
		if err != nil {
			return "", fmt.Errorf("%s: %w", next, err)
		}
		if !path.IsAbs(target) {
			target = path.Join(cur, target)
		}
		target = path.Clean(target)
		if !inside(target) {
			return "", fmt.Errorf("%s is a symbolic link to %s, outside %s; refused", next, target, OutboundDir)
		}
		// Go on from the link's target, within the outbound directory.
		rest = append(strings.Split(strings.TrimPrefix(target, OutboundDir), "/"), rest...)
		cur = OutboundDir
	}
	if cur == OutboundDir {
		return "", fmt.Errorf("%s names %s itself; want a file inside it", full, OutboundDir)
	}
	fi, err := fsys.Lstat(ctx, cur)
	if err != nil {
		return "", fmt.Errorf("%s: %w", cur, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file (%v)", cur, fi.Mode().Type())
	}
	return cur, nil
}

// inside reports whether p, clean and absolute, is OutboundDir or below.
func inside(p string) bool {
	return p == OutboundDir || strings.HasPrefix(p, OutboundDir+"/")
}
