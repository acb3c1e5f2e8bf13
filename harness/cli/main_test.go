package cli

import (
	"os"
	"testing"

	"github.com/satbench/hil/fixtures/payload"
)

func TestMain(m *testing.M) {
	payload.RunIfChild() // runs on the sim bench start this binary as the payload
	os.Exit(m.Run())
}
