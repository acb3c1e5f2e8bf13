// Package waitlog is an append-only log that can be waited on: the bus's
// event log and the tests' recorders of payload log lines are built on it,
// so that nothing polls or sleeps to see whether something has happened.
package waitlog

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// Log is an append-only list of T. The zero value is ready to use.
type Log[T any] struct {
	mu      sync.Mutex
	items   []T
	changed chan struct{} // closed and replaced on every append; nil until waited on
}

// Append adds v and returns its index.
func (l *Log[T]) Append(v T) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.items = append(l.items, v)
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	return len(l.items) - 1
}

// AppendWith adds the value make returns for the next index, atomically,
// for items that carry their own sequence number.
func (l *Log[T]) AppendWith(make func(index int) T) T {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := make(len(l.items))
	l.items = append(l.items, v)
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	return v
}

// All returns a copy of every item so far.
func (l *Log[T]) All() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]T(nil), l.items...)
}

// Wait returns the first item, from the start of the log, for which match
// is true, waiting for it until ctx is done.
func (l *Log[T]) Wait(ctx context.Context, match func(T) bool) (T, error) {
	next := 0
	for {
		l.mu.Lock()
		for ; next < len(l.items); next++ {
			if match(l.items[next]) {
				v := l.items[next]
				l.mu.Unlock()
				return v, nil
			}
		}
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			var zero T
			return zero, context.Cause(ctx)
		}
	}
}

// Lines is a log of text lines, usable as a Logf.
type Lines struct{ Log[string] }

// Logf records one line.
func (l *Lines) Logf(format string, args ...any) { l.Append(fmt.Sprintf(format, args...)) }

// String is every line so far, one a line.
func (l *Lines) String() string { return strings.Join(l.All(), "\n") }

// Wait returns the first line holding every one of parts, waiting for it
// until ctx is done.
func (l *Lines) Wait(ctx context.Context, parts ...string) (string, error) {
	line, err := l.Log.Wait(ctx, func(line string) bool {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				return false
			}
		}
		return true
	})
	if err != nil {
		return "", fmt.Errorf("no line with %q: %w", parts, err)
	}
	return line, nil
}
