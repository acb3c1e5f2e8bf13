package bench

import "strconv"

// Error is a problem in a bench or board file. It reads
//
//	benches/sim.yaml:7: store.bucket: "Bad_Bucket" is not a valid S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)
//
// so that editors and CI logs can jump to the line.
type Error struct {
	File  string // the bench or board file, as passed to Load or found from it
	Line  int    // 1-based; 0 when the problem has no line (the file cannot be read)
	Field string // dotted path, e.g. "store.bucket", "boards[1]"; empty for the whole file
	Err   error  // what is wrong and what would be right
}

func (e *Error) Error() string {
	s := e.File
	if e.Line > 0 {
		s += ":" + strconv.Itoa(e.Line)
	}
	s += ": "
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Err.Error()
}

// Unwrap returns e.Err, so that errors.Is(err, fs.ErrNotExist) works for a
// bench file that is missing.
func (e *Error) Unwrap() error { return e.Err }
