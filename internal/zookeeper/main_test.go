package zookeeper

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pero-worker/pero-worker/internal/testenv"
)

// Every Store a test opens is closed, and Close waits for the client library's goroutines, so no
// goroutine may outlive the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testLogger shows only errors unless PERO_TEST_LOG=debug.
func testLogger() *slog.Logger {
	level := slog.LevelError
	if strings.EqualFold(os.Getenv("PERO_TEST_LOG"), "debug") {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// testConfig returns a Config with a root of its own under a unique top-level node, which is
// deleted (as the same user) when the test ends.
func testConfig(t *testing.T, auth string) Config {
	t.Helper()
	addr := testenv.ZooKeeper(t)
	top := "/" + testenv.Unique("t")
	cfg := Config{
		Servers:        []string{addr},
		Root:           top + "/pero",
		ConnectTimeout: 10 * time.Second,
		Auth:           auth,
		Logger:         testLogger(),
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := Dial(ctx, cfg)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer s.Close()
		if err := s.deleteTree(ctx, top); err != nil && !strings.Contains(err.Error(), "node does not exist") {
			t.Errorf("cleanup of %s: %v", top, err)
		}
	})
	return cfg
}

// newStore dials a Store on a fresh root and closes it when the test ends.
func newStore(t *testing.T) *Store {
	t.Helper()
	return dialStore(t, testConfig(t, ""))
}

func dialStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := Dial(testContext(t), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}
