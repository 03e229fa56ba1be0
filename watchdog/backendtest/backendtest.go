// Package backendtest is the conformance suite every watchdog.Backend passes, run against the
// real engine by each backend's tests.
package backendtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/watchdog"
)

// Harness is what the suite needs of a backend.
type Harness struct {
	// New returns a backend for scope; the suite gives each test a scope of its own.
	New func(t *testing.T, scope string) watchdog.Backend
	// Kill removes a container that may still run; the suite's cleanup uses it.
	Kill func(id string)
	// Image is the probe image (testimage.Probe).
	Image string
	// Timeout bounds each wait for a state; default 60s.
	Timeout time.Duration
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	if h.Timeout == 0 {
		h.Timeout = 60 * time.Second
	}
	t.Run("ExitCodeLogsRemove", func(t *testing.T) { testExit(t, h) })
	t.Run("RunningIsUp", func(t *testing.T) { testRunning(t, h) })
	t.Run("EnvAndSecretFile", func(t *testing.T) { testEnv(t, h) })
	t.Run("ScopeIsolation", func(t *testing.T) { testScope(t, h) })
	t.Run("MissingImage", func(t *testing.T) { testMissingImage(t, h) })
}

func spec(h Harness, stage string, env ...string) watchdog.Spec {
	name := testenv.Unique("pero-bt-" + stage)
	return watchdog.Spec{
		Name:        name,
		Image:       h.Image,
		Env:         env,
		Labels:      watchdog.Labels("", stage, "v1", "wd-test", nil, time.Now()),
		NanoCPUs:    500_000_000,
		MemoryBytes: 64 << 20,
		PidsLimit:   64,
		StopTimeout: 5 * time.Second,
		Network:     "host",
	}
}

func launch(t *testing.T, h Harness, b watchdog.Backend, s watchdog.Spec) watchdog.Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	defer cancel()
	c, err := b.Launch(ctx, s)
	if err != nil {
		t.Fatalf("launch: %v", err)
	}
	t.Cleanup(func() { h.Kill(c.ID) })
	if c.ID == "" || c.Name != s.Name || c.Stage != s.Labels[watchdog.LabelStage] {
		t.Fatalf("launch returned %+v", c)
	}
	return c
}

// waitFor polls List until cond holds for the container named name.
func waitFor(t *testing.T, h Harness, b watchdog.Backend, name, what string, cond func(watchdog.Container) bool) watchdog.Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last []watchdog.Container
	for {
		list, err := b.List(ctx)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		last = list
		for _, c := range list {
			if c.Name == name && cond(c) {
				return c
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("container %s: not %s within %s; list: %+v", name, what, h.Timeout, last)
		case <-tick.C:
		}
	}
}

func testExit(t *testing.T, h Harness) {
	scope := testenv.Unique("bt")
	b := h.New(t, scope)
	before := time.Now()
	s := spec(h, "exit", "PROBE_EXIT=3", "PROBE_LINES=50")
	c := launch(t, h, b, s)
	got := waitFor(t, h, b, s.Name, "exited", func(c watchdog.Container) bool { return c.State == watchdog.Exited })
	if got.ExitCode != 3 {
		t.Errorf("exit code = %d, want 3 (%+v)", got.ExitCode, got)
	}
	if got.ID != c.ID || got.Stage != "exit" || got.ConfigVersion != "v1" || got.Watchdog != "wd-test" {
		t.Errorf("labels not read back: %+v", got)
	}
	if got.Created.Before(before.Add(-time.Second)) || got.Created.After(time.Now()) {
		t.Errorf("created = %s, launched after %s", got.Created, before)
	}
	if got.Finished.IsZero() || got.Finished.Before(got.Created.Add(-time.Second)) {
		t.Errorf("finished = %s, created %s", got.Finished, got.Created)
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	defer cancel()
	logs, err := b.Logs(ctx, got.ID, 3)
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	if want := "line 49\nline 50\nexit 3"; !sameLines(logs, want) {
		t.Errorf("logs = %q, want the lines of %q", logs, want)
	}
	if err := b.Remove(ctx, got.ID); err != nil {
		t.Fatalf("remove: %v", err)
	}
	list, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(list, func(c watchdog.Container) bool { return c.ID == got.ID }) {
		t.Errorf("removed container still listed")
	}
	if err := b.Remove(ctx, got.ID); err != nil {
		t.Errorf("second remove: %v", err)
	}
}

// sameLines compares the set of lines: stdout and stderr interleave in any order.
func sameLines(got, want string) bool {
	g, w := strings.Split(strings.TrimSpace(got), "\n"), strings.Split(want, "\n")
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}

func testRunning(t *testing.T, h Harness) {
	b := h.New(t, testenv.Unique("bt"))
	s := spec(h, "run", "PROBE_SLEEP=120s")
	launch(t, h, b, s)
	got := waitFor(t, h, b, s.Name, "up", func(c watchdog.Container) bool { return c.State == watchdog.Up })
	if got.ExitCode != 0 || !got.Finished.IsZero() {
		t.Errorf("running container: %+v", got)
	}
}

func testEnv(t *testing.T, h Harness) {
	b := h.New(t, testenv.Unique("bt"))
	dir, err := os.MkdirTemp("", "pero-bt-secret-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The container runs as an unprivileged user: the secret must be readable by it.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "pw")
	if err := os.WriteFile(secret, []byte("s3cret-from-file"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := spec(h, "env", "PROBE_ECHO=from-env", "PROBE_CAT=/run/secrets/pw")
	s.Mounts = []watchdog.Mount{{Source: secret, Target: "/run/secrets/pw", ReadOnly: true}}
	launch(t, h, b, s)
	got := waitFor(t, h, b, s.Name, "exited", func(c watchdog.Container) bool { return c.State == watchdog.Exited })
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	defer cancel()
	logs, err := b.Logs(ctx, got.ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"echo: from-env", "cat: s3cret-from-file", `argv: ["/probe"]`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if got.ExitCode != 0 {
		t.Errorf("exit code %d", got.ExitCode)
	}
}

func testScope(t *testing.T, h Harness) {
	a := h.New(t, testenv.Unique("bt-a"))
	other := h.New(t, testenv.Unique("bt-b"))
	s := spec(h, "scope", "PROBE_SLEEP=120s")
	launch(t, h, a, s)
	waitFor(t, h, a, s.Name, "listed", func(watchdog.Container) bool { return true })
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	defer cancel()
	list, err := other.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Errorf("another scope lists %d containers: %+v", len(list), list)
	}
}

func testMissingImage(t *testing.T, h Harness) {
	b := h.New(t, testenv.Unique("bt"))
	s := spec(h, "missing")
	s.Image = "pero-test-missing:" + fmt.Sprint(time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	defer cancel()
	c, err := b.Launch(ctx, s)
	if err != nil {
		list, lerr := b.List(ctx)
		if lerr != nil {
			t.Fatal(lerr)
		}
		if len(list) != 0 {
			t.Errorf("failed launch left %+v", list)
		}
		return
	}
	// Backends that schedule asynchronously (a swarm) report the failure as an exit.
	t.Cleanup(func() { h.Kill(c.ID) })
	got := waitFor(t, h, b, s.Name, "failed", func(c watchdog.Container) bool { return c.State == watchdog.Exited })
	if got.ExitCode == 0 || got.Error == "" {
		t.Errorf("missing image: %+v", got)
	}
}
