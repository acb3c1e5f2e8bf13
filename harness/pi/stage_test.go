package pi_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/satbench/hil/harness/pi"
	pb "github.com/satbench/hil/harness/pi/antarispb"
	"github.com/satbench/hil/internal/waitlog"
)

func TestOutboundPath(t *testing.T) {
	for _, tc := range []struct {
		rel, want, err string
	}{
		{"", "", "empty"},
		{"/etc/passwd", "", "absolute"},
		{"/opt/antaris/outbound/a.bin", "", "absolute"},
		{"..", "", `".." segment`},
		{"../x", "", `".." segment`},
		{"a/../../x", "", `".." segment`},
		{"a/..", "", `".." segment`},
		{"a/b/..", "", `".." segment`},
		{"a\x00b", "", "NUL"},
		{".", "", "names /opt/antaris/outbound itself"},
		{"./", "", "names /opt/antaris/outbound itself"},
		{"a/b.bin", "/opt/antaris/outbound/a/b.bin", ""},
		{"b.bin", "/opt/antaris/outbound/b.bin", ""},
		{"./a//b.bin", "/opt/antaris/outbound/a/b.bin", ""},
		{"..a/b..", "/opt/antaris/outbound/..a/b..", ""},
		{"a b/ç.bin", "/opt/antaris/outbound/a b/ç.bin", ""},
	} {
		got, err := pi.OutboundPath(tc.rel)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("OutboundPath(%q) = %q, %v; want %q", tc.rel, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("OutboundPath(%q) = %q, %v; want an error saying %q", tc.rel, got, err, tc.err)
		}
	}
}

// dirFS is a payload's filesystem on a real directory: payload path
// /opt/antaris/outbound/x is root/x. It fails the test if asked about a
// path outside the outbound directory: ResolveOutbound must refuse before
// looking there.
type dirFS struct {
	t    testing.TB
	root string
}

func (d dirFS) host(name string) (string, error) {
	rel, ok := strings.CutPrefix(name, pi.OutboundDir)
	if !ok || (rel != "" && rel[0] != '/') || path.Clean(name) != name {
		d.t.Errorf("ResolveOutbound looked at %q, outside %s", name, pi.OutboundDir)
		return "", fs.ErrPermission
	}
	return filepath.Join(d.root, filepath.FromSlash(rel)), nil
}

func (d dirFS) Lstat(_ context.Context, name string) (fs.FileInfo, error) {
	h, err := d.host(name)
	if err != nil {
		return nil, err
	}
	return os.Lstat(h)
}

func (d dirFS) ReadLink(_ context.Context, name string) (string, error) {
	h, err := d.host(name)
	if err != nil {
		return "", err
	}
	return os.Readlink(h)
}

// outboundTree makes an outbound directory on disk with files, a FIFO and
// symbolic links, inside and out.
func outboundTree(t testing.TB) dirFS {
	t.Helper()
	root := t.TempDir()
	mk := func(name string) {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(target, name string) {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	mk("a/b.bin")
	mk("top.bin")
	mk("sub/deep/f.bin")
	ln("top.bin", "rel.bin")
	ln("/opt/antaris/outbound/a/b.bin", "abs.bin")
	ln("../b.bin", "a/up.bin") // a/../b.bin: inside
	ln("../../../etc/passwd", "rel-out.bin")
	ln("/etc/passwd", "abs-out.bin")
	ln("/opt/antaris/outbound-other/x", "sibling.bin") // a prefix, not inside
	ln("loop2", "loop1")
	ln("loop1", "loop2")
	ln("self", "self")
	ln("/tmp", "dir-out")
	ln("..", "parent")
	ln("sub", "dir-in")
	ln("dir-in/deep", "chain")
	ln("rel.bin", "link-to-link.bin")
	ln("missing.bin", "dangling.bin")
	ln(".", "dot")
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dirFS{t: t, root: root}
}

func TestResolveOutbound(t *testing.T) {
	fsys := outboundTree(t)
	const o = pi.OutboundDir
	for _, tc := range []struct {
		rel, want, err string
	}{
		{"a/b.bin", o + "/a/b.bin", ""},
		{"rel.bin", o + "/top.bin", ""},
		{"abs.bin", o + "/a/b.bin", ""},
		{"a/up.bin", o + "/b.bin", "no such file"}, // inside, but b.bin is not there
		{"link-to-link.bin", o + "/top.bin", ""},
		{"dir-in/deep/f.bin", o + "/sub/deep/f.bin", ""},
		{"chain/f.bin", o + "/sub/deep/f.bin", ""},
		{"dot/top.bin", o + "/top.bin", ""},
		{"rel-out.bin", "", "outside /opt/antaris/outbound; refused"},
		{"abs-out.bin", "", "outside /opt/antaris/outbound; refused"},
		{"sibling.bin", "", "outside /opt/antaris/outbound; refused"},
		{"dir-out/passwd", "", "symbolic link to /tmp, outside"},
		{"parent/outbound/top.bin", "", "outside /opt/antaris/outbound; refused"},
		{"loop1", "", "more than 40 symbolic links"},
		{"self", "", "more than 40 symbolic links"},
		{"a", "", "not a regular file"},
		{"dir-in", "", "not a regular file"},
		{"dot", "", "names /opt/antaris/outbound itself"},
		{"fifo", "", "not a regular file"},
		{"missing.bin", "", "no such file"},
		{"dangling.bin", "", "no such file"},
		{"top.bin/x", "", "not a directory"},
	} {
		full, err := pi.OutboundPath(tc.rel)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pi.ResolveOutbound(context.Background(), fsys, full)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ResolveOutbound(%q) = %q, %v; want %q", tc.rel, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ResolveOutbound(%q) = %q, %v; want an error saying %q", tc.rel, got, err, tc.err)
		}
	}
}

// stager is a Config.Stage that records what it is asked and fails for
// paths holding "fail".
type stager struct{ reqs waitlog.Log[pi.StageRequest] }

func (s *stager) stage(_ context.Context, r pi.StageRequest) error {
	s.reqs.Append(r)
	if strings.Contains(r.Path, "fail") {
		return errors.New("the payload has no such file")
	}
	return nil
}

func TestStageFileDownload(t *testing.T) {
	a := newTestApp(t, 1, nil)
	st := &stager{}
	b := startBench(t, pi.Config{Apps: []pi.App{a.App()}, Stage: st.stage})
	pc := b.connect(a, nil)
	b.register(a, pc, 1, 0)
	resp := func(corr int32) int32 {
		t.Helper()
		return a.waitCall("PA_ProcessResponseStageFileDownload", corr).Req.(*pb.RespStageFileDownloadParams).GetReqStatus()
	}

	t.Run("accepted", func(t *testing.T) {
		r, err := pc.PCStageFileDownload(ctxT(t), &pb.ReqStageFileDownloadParams{CorrelationId: 20, FilePath: "a/b.bin",
			FilePriority: pb.FilePriorities_FILE_DL_PRIORITY_HIGH, FileDlBand: pb.FileDlRadioType_FILE_DL_XBAND})
		code(t, "PC_stage_file_download", r, err, 0)
		if s := resp(20); s != int32(pb.ReqStatus_Request_success) {
			t.Errorf("req_status %d", s)
		}
		req, _ := st.reqs.Wait(ctxT(t), func(r pi.StageRequest) bool { return r.Corr == 20 })
		want := pi.StageRequest{Board: a.Board, Path: "/opt/antaris/outbound/a/b.bin", Rel: "a/b.bin",
			Priority: pb.FilePriorities_FILE_DL_PRIORITY_HIGH, Band: pb.FileDlRadioType_FILE_DL_XBAND, Corr: 20}
		if req != want {
			t.Errorf("Stage got %+v, want %+v", req, want)
		}
		if e := b.waitKind(a.Board, pi.EventStaged); e.Corr != 20 || !strings.Contains(e.Detail, want.Path) {
			t.Errorf("staged event %q", e)
		}
	})
	t.Run("stage fails", func(t *testing.T) {
		r, err := pc.PCStageFileDownload(ctxT(t), &pb.ReqStageFileDownloadParams{CorrelationId: 21, FilePath: "fail.bin"})
		code(t, "PC_stage_file_download", r, err, 0)
		if s := resp(21); s != int32(pb.ReqStatus_Request_failed) {
			t.Errorf("req_status %d, want Request_failed", s)
		}
		if e := b.waitKind(a.Board, pi.EventStageFailed); e.Corr != 21 || !strings.Contains(e.Detail, "no such file") {
			t.Errorf("stage failed event %q", e)
		}
	})
	for i, tc := range []struct {
		name string
		req  *pb.ReqStageFileDownloadParams
		why  string
	}{
		{"empty path", &pb.ReqStageFileDownloadParams{}, "empty"},
		{"absolute path", &pb.ReqStageFileDownloadParams{FilePath: "/etc/shadow"}, "absolute"},
		{"dot-dot", &pb.ReqStageFileDownloadParams{FilePath: "a/../../x"}, `".."`},
		{"NUL", &pb.ReqStageFileDownloadParams{FilePath: "a\x00"}, "NUL"},
		{"the directory", &pb.ReqStageFileDownloadParams{FilePath: "."}, "itself"},
		{"priority 4", &pb.ReqStageFileDownloadParams{FilePath: "ok.bin", FilePriority: 4}, "file_priority 4"},
		{"priority -1", &pb.ReqStageFileDownloadParams{FilePath: "ok.bin", FilePriority: -1}, "file_priority -1"},
		{"band 2", &pb.ReqStageFileDownloadParams{FilePath: "ok.bin", FileDlBand: 2}, "file_dl_band 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			corr := int32(30 + i)
			tc.req.CorrelationId = corr
			r, err := pc.PCStageFileDownload(ctxT(t), tc.req)
			code(t, "PC_stage_file_download", r, err, pb.AntarisReturnCode_An_INVALID_PARAMS)
			if s := resp(corr); s != int32(pb.ReqStatus_Request_failed) {
				t.Errorf("req_status %d, want Request_failed", s)
			}
			e := b.wait(func(e pi.Event) bool { return e.Kind == pi.EventInvalid && e.Corr == corr })
			if e.Method != "PC_stage_file_download" || !strings.Contains(e.Detail, tc.why) {
				t.Errorf("invalid event %q, want it to say %q", e, tc.why)
			}
		})
	}
	b.Close()
	for _, r := range st.reqs.All() {
		if r.Corr >= 30 {
			t.Errorf("Stage called for a refused request: %+v", r)
		}
	}
}

// TestStageNotConfigured: a bench without a Stage answers
// An_NOT_IMPLEMENTED, after the path checks.
func TestStageNotConfigured(t *testing.T) {
	a := newTestApp(t, 1, nil)
	b := startBench(t, pi.Config{Apps: []pi.App{a.App()}})
	pc := b.connect(a, nil)
	b.register(a, pc, 1, 0)
	r, err := pc.PCStageFileDownload(ctxT(t), &pb.ReqStageFileDownloadParams{CorrelationId: 1, FilePath: "a.bin"})
	code(t, "PC_stage_file_download", r, err, pb.AntarisReturnCode_An_NOT_IMPLEMENTED)
	r, err = pc.PCStageFileDownload(ctxT(t), &pb.ReqStageFileDownloadParams{CorrelationId: 2, FilePath: "../a.bin"})
	code(t, "PC_stage_file_download", r, err, pb.AntarisReturnCode_An_INVALID_PARAMS)
}

// TestStageBusy: a third file while two are being staged is answered
// An_OUT_OF_RESOURCES with an event; once one is done, more are taken.
func TestStageBusy(t *testing.T) {
	a := newTestApp(t, 1, nil)
	release := make(chan struct{})
	var started waitlog.Log[pi.StageRequest]
	b := startBench(t, pi.Config{Apps: []pi.App{a.App()}, Stage: func(ctx context.Context, r pi.StageRequest) error {
		started.Append(r)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}})
	pc := b.connect(a, nil)
	b.register(a, pc, 1, 0)
	for i := range 2 {
		r, err := pc.PCStageFileDownload(ctxT(t), &pb.ReqStageFileDownloadParams{CorrelationId: int32(i), FilePath: fmt.Sprintf("%d.bin", i)})
		code(t, "PC_stage_file_download", r, err, 0)
	}
	r, err := pc.PCStageFileDownload(ctxT(t), &pb.ReqStageFileDownloadParams{CorrelationId: 2, FilePath: "2.bin"})
	code(t, "PC_stage_file_download", r, err, pb.AntarisReturnCode_An_OUT_OF_RESOURCES)
	if e := b.waitKind(a.Board, pi.EventDropped); e.Corr != 2 {
		t.Errorf("dropped event %q", e)
	}
	close(release)
	a.waitCall("PA_ProcessResponseStageFileDownload", 0)
	a.waitCall("PA_ProcessResponseStageFileDownload", 1)
	r, err = pc.PCStageFileDownload(ctxT(t), &pb.ReqStageFileDownloadParams{CorrelationId: 3, FilePath: "3.bin"})
	code(t, "PC_stage_file_download", r, err, 0)
	a.waitCall("PA_ProcessResponseStageFileDownload", 3)
}
