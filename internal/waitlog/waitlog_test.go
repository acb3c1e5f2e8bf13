package waitlog

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

func TestWaitSeesPastAndFuture(t *testing.T) {
	var l Lines
	l.Logf("boot %d", 1)
	// A line already there is found at once.
	if got, err := l.Wait(context.Background(), "boot"); err != nil || got != "boot 1" {
		t.Fatalf("Wait for a past line: %q, %v", got, err)
	}
	// A line appended later wakes the waiter.
	done := make(chan string)
	go func() {
		got, err := l.Wait(context.Background(), "ready", "22")
		if err != nil {
			t.Error(err)
		}
		done <- got
	}()
	l.Logf("listening on 22")
	l.Logf("ready on 22")
	if got := <-done; got != "ready on 22" {
		t.Errorf("Wait for a future line got %q", got)
	}
	if got := l.String(); got != "boot 1\nlistening on 22\nready on 22" {
		t.Errorf("String() = %q", got)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	var l Lines
	cause := errors.New("window over")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	_, err := l.Wait(ctx, "never")
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), `"never"`) {
		t.Errorf("Wait on a done context: %v, want the cause and the parts", err)
	}
}

func TestAppendWithNumbersInOrder(t *testing.T) {
	var l Log[int]
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() { defer wg.Done(); l.AppendWith(func(i int) int { return i }) }()
	}
	wg.Wait()
	for i, v := range l.All() {
		if v != i {
			t.Fatalf("item %d carries index %d", i, v)
		}
	}
}
