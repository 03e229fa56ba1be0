// Package testswarm makes the local Docker engine a single-node swarm for tests, and undoes it.
package testswarm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/testenv"
)

var (
	swarmMu   sync.Mutex
	lock      *os.File // held from Ensure to Leave: test processes take turns with the swarm
	initiated bool
	// gwbridge is true when docker_gwbridge, which swarm init creates, was there before.
	gwbridge bool
)

// Ensure makes the local engine a single-node swarm manager for a test: it runs
// `docker swarm init --advertise-addr 127.0.0.1` when the engine is in no swarm, and Leave
// (call it from TestMain) leaves again only then.
func Ensure(t testing.TB) {
	t.Helper()
	swarmMu.Lock()
	defer swarmMu.Unlock()
	if lock == nil {
		// Test binaries of several packages run at once; one leaving the swarm must not pull it
		// from under another.
		f, err := os.OpenFile(filepath.Join(os.TempDir(), "pero-test-swarm.lock"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			t.Fatal(err)
		}
		lock = f
	}
	out, err := exec.Command("docker", "info", "--format", "{{.Swarm.LocalNodeState}}/{{.Swarm.ControlAvailable}}").Output()
	if err != nil {
		testenv.Missing(t, "Docker engine", err.Error())
	}
	switch state := strings.TrimSpace(string(out)); state {
	case "active/true":
		return
	case "inactive/false":
		gwbridge = exec.Command("docker", "network", "inspect", "docker_gwbridge").Run() == nil
		if out, err := exec.Command("docker", "swarm", "init", "--advertise-addr", "127.0.0.1").CombinedOutput(); err != nil {
			t.Fatalf("docker swarm init: %v\n%s", err, out)
		}
		initiated = true
	default:
		testenv.Missing(t, "a swarm manager", "the engine's swarm state is "+state)
	}
}

// Leave leaves the swarm Ensure created, if it created one.
func Leave() {
	swarmMu.Lock()
	defer swarmMu.Unlock()
	if initiated {
		// Task containers go some time after their service; leaving earlier would strand them.
		for range 60 {
			out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=com.docker.swarm.service.id").Output()
			if err != nil || len(strings.TrimSpace(string(out))) == 0 {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		_ = exec.Command("docker", "swarm", "leave", "--force").Run()
		if out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=com.docker.swarm.service.id").Output(); len(out) > 0 {
			_ = exec.Command("docker", append([]string{"rm", "-f"}, strings.Fields(string(out))...)...).Run()
		}
		if !gwbridge {
			// The network stays busy while the last task containers go away.
			for range 40 {
				if exec.Command("docker", "network", "inspect", "docker_gwbridge").Run() != nil ||
					exec.Command("docker", "network", "rm", "docker_gwbridge").Run() == nil {
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
		}
		initiated = false
	}
	if lock != nil {
		_ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
		lock.Close()
		lock = nil
	}
}
