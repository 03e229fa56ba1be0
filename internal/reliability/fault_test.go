package reliability

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/ftpstore"
	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
	"github.com/pero-worker/pero-worker/runner"
)

// runners reads the status nodes of the stage's runners.
func (s *system) runners(stage string) map[string]runner.Status {
	out := map[string]runner.Status{}
	dir := runner.RunnersPath(s.root, stage)
	kids, _, err := s.store.Conn().Children(dir)
	if err != nil {
		return out
	}
	for _, k := range kids {
		data, _, err := s.store.Conn().Get(path.Join(dir, k))
		var st runner.Status
		if err == nil && json.Unmarshal(data, &st) == nil {
			out[k] = st
		}
	}
	return out
}

// midBatch waits for a runner of stage that is processing a batch after at least batches
// finished ones, and returns its container name.
func (s *system) midBatch(stage string, batches int64, within time.Duration) string {
	s.t.Helper()
	var name string
	testenv.Eventually(s.t, within, "a runner in the middle of a batch", func() bool {
		for n, st := range s.runners(stage) {
			if st.State == runner.StateRunning && st.InFlight > 0 && st.Batches >= batches {
				name = n
				return true
			}
		}
		return false
	})
	return name
}

// TestKill9ContainerMidBatch: a function container killed with SIGKILL while it processes a
// batch. The broker hands its unacknowledged batch to the other runners, the watchdog reaps the
// dead container and keeps the stage served: every page reaches the output, with at most the
// killed batch processed twice.
func TestKill9ContainerMidBatch(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	out := s.output()
	const n, batch = 80, 4
	stage := s.sleepStage(0.1, batch, 2)
	wd := s.watchdog("wd-a")
	ids := s.publish(n, stage, out)

	victim := s.midBatch(stage, 2, 60*time.Second)
	if b, err := exec.Command("docker", "kill", "--signal", "KILL", victim).CombinedOutput(); err != nil {
		t.Fatalf("docker kill: %v: %s", err, b)
	}
	t.Logf("killed %s mid-batch", victim)

	acc := s.settle(ids, out, []string{stage}, batch, 120*time.Second)
	if f := acc.failed(); f != 0 {
		t.Errorf("%d pages failed", f)
	}
	// The kill hit unacknowledged work: those pages were delivered again and say so.
	if r := acc.redelivered(); r == 0 {
		t.Errorf("no page was delivered twice: the kill did not land in a batch")
	} else {
		t.Logf("%d pages redelivered after the kill", r)
	}
	s.atMost(stage, 2)
	// The watchdog saw the kill (exit 137) and reaped the container.
	testenv.Eventually(t, 10*time.Second, "the watchdog reports the killed container", func() bool {
		return len(wd.lines("container failed", victim, "exit_code=137")) == 1
	})
	for _, c := range s.containers() {
		if c.Name == victim {
			t.Errorf("killed container %s not reaped", victim)
		}
	}
	if strings.Contains(wd.text(), "level=ERROR") {
		t.Errorf("the watchdog logged errors")
	}
}

// TestRabbitMQRestart: the broker is stopped and started again while two containers process a
// backlog. The runners reconnect (their batches in flight are redelivered), the watchdog's
// session recovers, and every page reaches the output with at most one batch per runner processed
// twice; the stage never gets more containers than its maximum.
func TestRabbitMQRestart(t *testing.T) {
	s := newSystem(t)
	out := s.output()
	const n, batch, most = 100, 4, 2
	stage := s.sleepStage(0.25, batch, most)
	wd := s.watchdog("wd-a")
	ids := s.publish(n, stage, out)
	testenv.Eventually(t, 60*time.Second, "processing under way", func() bool { return s.readyOr(out) >= 12 })

	down := time.Now()
	s.svc.do(t, "stop", "rabbitmq")
	s.svc.do(t, "start", "rabbitmq")
	t.Logf("broker back after %s", time.Since(down).Round(100*time.Millisecond))

	acc := s.settle(ids, out, []string{stage}, most*batch, 180*time.Second)
	if f := acc.failed(); f != 0 {
		t.Errorf("%d pages failed", f)
	}
	s.atMost(stage, most)
	if len(wd.lines("level=ERROR")) > 0 {
		t.Errorf("the watchdog logged errors: %q", wd.lines("level=ERROR"))
	}
}

// TestZooKeeperRestart: ZooKeeper is stopped for longer than the watchdog's session timeout
// and started again while containers process a backlog. The runners keep processing (ZooKeeper
// holds only their status and statistics), the watchdog steps down while it cannot see
// ZooKeeper and leads again once it is back, and every page reaches the output exactly once.
func TestZooKeeperRestart(t *testing.T) {
	s := newSystem(t)
	out := s.output()
	const n, batch, most = 100, 4, 2
	stage := s.sleepStage(0.2, batch, most)
	wd := s.watchdog("wd-a")
	s.leads("wd-a", 30*time.Second)
	ids := s.publish(n, stage, out)
	testenv.Eventually(t, 60*time.Second, "processing under way", func() bool { return s.readyOr(out) >= 12 })

	s.svc.do(t, "stop", "zookeeper")
	time.Sleep(6 * time.Second) // beyond the watchdog's session timeout (4s)
	s.svc.do(t, "start", "zookeeper")
	back := time.Now()
	// It publishes its status again, so it leads again.
	testenv.Eventually(t, 30*time.Second, "the watchdog leads again", func() bool {
		st, err := s.status()
		return err == nil && st.Watchdog == "wd-a" && st.Updated.After(back)
	})

	// The first containers finish the backlog and exit; new pages need new containers, which
	// only a watchdog that recovered launches.
	testenv.Eventually(t, 60*time.Second, "the first containers exit", func() bool { return s.alive() == 0 })
	ids = append(ids, s.publish(40, stage, out)...)

	acc := s.settle(ids, out, []string{stage}, 0, 180*time.Second)
	if f := acc.failed(); f != 0 {
		t.Errorf("%d pages failed", f)
	}
	s.atMost(stage, most)
	if len(wd.lines("level=ERROR")) > 0 {
		t.Errorf("the watchdog logged errors: %q", wd.lines("level=ERROR"))
	}
}

// modelArchive is a tar.gz of one file of size random (incompressible) bytes.
func modelArchive(t *testing.T, size int) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	data := make([]byte, size)
	_, _ = rand.Read(data)
	if err := tw.WriteHeader(&tar.Header{Name: "model/weights.bin", Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// modelStage creates a noop stage whose containers must fetch archive from the file server
// first, at most max at once.
func (s *system) modelStage(archive []byte, max int) string {
	s.t.Helper()
	st, err := ftpstore.New(ftpstore.Config{Addr: s.svc.ftpAddr(), User: s.svc.user, Password: s.svc.ftpPassword})
	if err != nil {
		s.t.Fatal(err)
	}
	name := testenv.Unique("model")
	remote := "models/" + name + "/model.tar.gz"
	sum, _, err := st.Upload(ctxFor(s.t, 60*time.Second), remote, bytes.NewReader(archive))
	if err != nil {
		s.t.Fatal(err)
	}
	s.stage(zookeeper.Stage{Name: name, ConfigPath: remote, ModelSHA256: sum, Settings: zookeeper.Settings{
		Function: "noop", Image: s.image, BatchSize: 4, MaxContainers: max, IdleTimeout: zookeeper.Duration(2 * time.Second)}})
	return name
}

// TestFTPDownWhileContainersStart: the file server is down when a backlog arrives for a stage
// with a model. The containers cannot fetch it: they exit with the "unavailable" code, saying
// which server refused, before taking any message; the watchdog backs the stage off and probes
// with one container at a time instead of relaunching in a loop. When the server is back the next
// probe fetches the model and the backlog drains.
func TestFTPDownWhileContainersStart(t *testing.T) {
	s := newSystem(t)
	out := s.output()
	const most = 2
	stage := s.modelStage(modelArchive(t, 64<<10), most)
	s.svc.do(t, "stop", "ftp")
	up := false
	t.Cleanup(func() {
		if !up { // the other tests need it
			s.svc.do(t, "start", "ftp")
		}
	})
	wd := s.watchdog("wd-a")
	ids := s.publish(30, stage, out)

	testenv.Eventually(t, 60*time.Second, "a container fails for want of the file server", func() bool {
		return len(wd.lines("container failed", "exit_code=3")) > 0
	})
	failed := wd.lines("container failed", "exit_code=3")[0]
	if !strings.Contains(failed, s.svc.ftpAddr()) || !strings.Contains(failed, "connection refused") {
		t.Errorf("the failure does not say which server refused: %s", failed)
	}
	testenv.Eventually(t, 10*time.Second, "the stage backs off", func() bool {
		st, err := s.status()
		if err != nil {
			return false
		}
		v, ok := st.Find(stage)
		return ok && v.Failures > 0
	})
	// A while down: the first round and single probes, no launch loop, no message taken.
	time.Sleep(8 * time.Second)
	if n := s.launched(stage); n > most+2 {
		t.Errorf("%d containers launched while the file server was down", n)
	}
	if n := s.ready(stage); n != len(ids) {
		t.Errorf("%d of %d pages in the queue: containers without their model took pages", n, len(ids))
	}
	t.Logf("%d containers launched in the outage", s.launched(stage))

	s.svc.do(t, "start", "ftp")
	up = true
	acc := s.settle(ids, out, []string{stage}, 0, 120*time.Second)
	if f := acc.failed(); f != 0 {
		t.Errorf("%d pages failed", f)
	}
	s.atMost(stage, most)
}

// TestModelCacheDiskFull: the model cache volume is a 1 MiB filesystem and the model does not
// fit. The containers exit with the model code and "no space left on device" in their last lines,
// which the watchdog logs; the failed download leaves nothing behind and no page is taken. Once
// the filesystem is grown, the next probe fetches the model and the backlog drains.
func TestModelCacheDiskFull(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small filesystem under the model cache")
	}
	s := newSystem(t)
	dir := filepath.Join(t.TempDir(), "cache")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m,uid=65532,gid=65532,mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, b)
	}
	volume := testenv.Unique("pero-rel-full")
	t.Cleanup(func() {
		removeScope(s.scope)
		_ = exec.Command("docker", "volume", "rm", "-f", volume).Run()
		if b, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, b)
		}
	})
	if b, err := exec.Command("docker", "volume", "create", "--driver", "local", "--opt", "type=none", "--opt", "o=bind",
		"--opt", "device="+dir, volume).CombinedOutput(); err != nil {
		t.Fatalf("docker volume create: %v: %s", err, b)
	}
	out := s.output()
	stage := s.modelStage(modelArchive(t, 3<<20), 1)
	wd := s.watchdog("wd-a", "PERO_CACHE_VOLUME="+volume)
	ids := s.publish(20, stage, out)

	testenv.Eventually(t, 60*time.Second, "a container fails for want of space", func() bool {
		return len(wd.lines("container failed", "exit_code=4")) > 0
	})
	if l := wd.lines("container failed", "exit_code=4")[0]; !strings.Contains(l, "no space left on device") {
		t.Errorf("the failure does not say the disk is full: %s", l)
	}
	if n := s.ready(stage); n != len(ids) {
		t.Errorf("%d of %d pages in the queue", n, len(ids))
	}
	var leftover []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".lock") {
			leftover = append(leftover, strings.TrimPrefix(p, dir))
		}
		return nil
	})
	if len(leftover) > 0 {
		t.Errorf("the failed download left files behind: %v", leftover)
	}

	if b, err := exec.Command("mount", "-o", "remount,size=16m", dir).CombinedOutput(); err != nil {
		t.Fatalf("grow the tmpfs: %v: %s", err, b)
	}
	acc := s.settle(ids, out, []string{stage}, 0, 120*time.Second)
	if f := acc.failed(); f != 0 {
		t.Errorf("%d pages failed", f)
	}
}

// TestZooKeeperSessionExpiry: the watchdog process and a runner's container are frozen for longer
// than their ZooKeeper session timeouts, so the server expires both sessions while processing
// goes on. Thawed, each opens a new session: the runner re-creates its status node, the watchdog
// wins the election again and adopts its containers; no page is lost and the stage never gets
// more containers than its maximum.
func TestZooKeeperSessionExpiry(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	out := s.output()
	const n, batch = 60, 2
	stage := s.sleepStage(0.25, batch, 1)
	wd := s.watchdog("wd-a")
	s.leads("wd-a", 30*time.Second)
	ids := s.publish(n, stage, out)

	victim := s.midBatch(stage, 1, 60*time.Second)
	node := runner.StatusPath(s.root, stage, victim)
	_, before, err := s.store.Conn().Get(node)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("docker", "pause", victim).CombinedOutput(); err != nil {
		t.Fatalf("docker pause: %v: %s", err, b)
	}
	wd.signal(syscall.SIGSTOP)
	time.Sleep(12 * time.Second) // beyond the watchdog's (4s) and the runner's (10s) session timeouts
	wd.signal(syscall.SIGCONT)
	if b, err := exec.Command("docker", "unpause", victim).CombinedOutput(); err != nil {
		t.Fatalf("docker unpause: %v: %s", err, b)
	}
	thawed := time.Now()

	testenv.Eventually(t, 30*time.Second, "the runner's status node back under a new session", func() bool {
		_, st, err := s.store.Conn().Get(node)
		return err == nil && st.EphemeralOwner != before.EphemeralOwner
	})
	testenv.Eventually(t, 30*time.Second, "the watchdog leads again", func() bool {
		st, err := s.status()
		return err == nil && st.Watchdog == "wd-a" && st.Updated.After(thawed)
	})
	acc := s.settle(ids, out, []string{stage}, batch, 120*time.Second)
	if f := acc.failed(); f != 0 {
		t.Errorf("%d pages failed", f)
	}
	s.atMost(stage, 1)
	if len(wd.lines("session expired")) == 0 {
		t.Errorf("the watchdog's session did not expire")
	}
}
