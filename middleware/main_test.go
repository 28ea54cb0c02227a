package middleware_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: every stream,
// subscription and connection is closed by Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
