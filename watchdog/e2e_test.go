package watchdog_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
	"github.com/pero-worker/pero-worker/watchdog"
	"github.com/pero-worker/pero-worker/watchdog/internal/testimage"
	"github.com/pero-worker/pero-worker/watchdog/internal/testswarm"
	"github.com/pero-worker/pero-worker/watchdog/swarm"
)

// TestBacklogDrains: 100 messages on a noop stage with max 4 containers. Containers appear within
// a poll interval plus their start time, never more than 4 at once, the queue drains, and the
// containers exit on their own and are reaped.
func TestBacklogDrains(t *testing.T) {
	w := newWorld(t)
	out := w.output()
	stage := testenv.Unique("noop")
	w.stage(zookeeper.Stage{Name: stage, Settings: zookeeper.Settings{
		Function: "noop", Image: w.image, MaxContainers: 4, BatchSize: 8,
		IdleTimeout: zookeeper.Duration(3 * time.Second),
	}})
	b := w.dockerBackend()
	wd := w.watchdog("wd-a", b, nil)
	testenv.Eventually(t, 10*time.Second, "watchdog leads", wd.Leader)
	s := startSampler(t, b)

	published := time.Now()
	w.publish(stage, out, 100)
	testenv.Eventually(t, 30*time.Second, "a container appears", func() bool { _, ok := s.firstSeen(stage); return ok })
	first, _ := s.firstSeen(stage)
	reaction := first.Sub(published)
	t.Logf("first container %s after publishing", reaction.Round(time.Millisecond))
	// One poll interval, plus the container's create and start (about a second here), plus the
	// sampler's own period.
	if limit := watchdog.DefaultPollInterval + 3*time.Second; reaction > limit {
		t.Errorf("first container after %s, want within %s", reaction, limit)
	}

	testenv.Eventually(t, 120*time.Second, "the backlog is processed", func() bool { return w.ready(out) == 100 })
	t.Logf("100 messages through %s in %s", stage, time.Since(published).Round(time.Millisecond))
	if n := w.ready(stage); n != 0 {
		t.Errorf("%d messages left in the stage queue", n)
	}
	// The runners exit after their idle timeout; the watchdog reaps them.
	w.waitReaped(b, 60*time.Second)
	s.halt()
	if s.maxOf(stage) > 4 {
		t.Errorf("%d containers at once, max is 4", s.maxOf(stage))
	}
	launched := s.launched(stage)
	t.Logf("containers: %d launched, at most %d at once", len(launched), s.maxOf(stage))
	if n := metric(t, wd, "pero_watchdog_launched_total", "stage", stage); int(n) != len(launched) {
		t.Errorf("launched_total = %v, sampler saw %d", n, len(launched))
	}
	if n := metric(t, wd, "pero_watchdog_exited_total", "reason", "ok", "stage", stage); int(n) != len(launched) {
		t.Errorf("exited_total{ok} = %v, want %d", n, len(launched))
	}
	if n := metric(t, wd, "pero_watchdog_reaction_seconds_count", "stage", stage); n < 1 {
		t.Errorf("reaction_seconds_count = %v", n)
	}
	st, err := w.status()
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := st.Find(stage); !ok || s.Containers() != 0 || st.Watchdog != "wd-a" {
		t.Errorf("status: %+v", st)
	}
}

// TestLeaderFailover: two watchdog processes; the leader is killed while its containers work.
// The standby leads within the session timeout, adopts the running containers and launches no
// duplicates; it reaps them when they finish.
func TestLeaderFailover(t *testing.T) {
	w := newWorld(t)
	bin := watchdogBinary(t)
	out := w.output()
	stage := testenv.Unique("sleep")
	w.stage(zookeeper.Stage{Name: stage, Config: "[sleep]\nseconds = 0.25\n", Settings: zookeeper.Settings{
		Function: "sleep", Image: w.image, MaxContainers: 3, BatchSize: 2,
		IdleTimeout: zookeeper.Duration(3 * time.Second),
	}})
	leader := func() string {
		st, err := w.status()
		if err != nil {
			return ""
		}
		return st.Watchdog
	}
	a := w.startProcess(bin, "wd-a")
	testenv.Eventually(t, 30*time.Second, "wd-a leads", func() bool { return leader() == "wd-a" })
	w.startProcess(bin, "wd-b")
	b := w.dockerBackend()
	s := startSampler(t, b)

	w.publish(stage, out, 120)
	testenv.Eventually(t, 30*time.Second, "3 containers run", func() bool { return s.aliveOf(stage) == 3 })
	// `pero status` shows them, from the status the leader publishes.
	testenv.Eventually(t, 10*time.Second, "pero status shows 3 containers", func() bool {
		out := w.peroStatus()
		return containersColumn(out, stage) == "3" && strings.Contains(out, "watchdog wd-a leads")
	})
	a.kill()
	took := testenv.Eventually(t, 30*time.Second, "wd-b leads", func() bool { return leader() == "wd-b" })
	t.Logf("wd-b leads %s after wd-a was killed (session timeout 4s)", took.Round(time.Millisecond))
	// The session timeout, then one poll to publish the status.
	if limit := 4*time.Second + 3*time.Second; took > limit {
		t.Errorf("takeover took %s, want within %s", took, limit)
	}
	if s.aliveOf(stage) == 0 {
		t.Errorf("the containers did not outlive their watchdog")
	}

	testenv.Eventually(t, 120*time.Second, "the backlog is processed", func() bool { return w.ready(out) == 120 })
	w.waitReaped(b, 60*time.Second)
	s.halt()
	if s.maxOf(stage) > 3 {
		t.Errorf("%d containers at once, max is 3", s.maxOf(stage))
	}
	for _, c := range s.launched(stage) {
		if c.Watchdog != "wd-a" {
			t.Errorf("container %s launched by %s: the standby duplicated work in progress", c.Name, c.Watchdog)
		}
	}
	t.Logf("%d containers, all launched by wd-a and reaped by wd-b", len(s.launched(stage)))
}

// TestFailingImageBacksOff: a stage whose image exits 1 at once gets one round of containers,
// then single probes spaced by a doubling backoff, not a launch storm.
func TestFailingImageBacksOff(t *testing.T) {
	w := newWorld(t)
	probe := testimage.Probe(t)
	out := w.output()
	stage := testenv.Unique("fail")
	w.stage(zookeeper.Stage{Name: stage, Settings: zookeeper.Settings{Function: "noop", Image: probe, MaxContainers: 4}})
	b := w.dockerBackend()
	wd := w.watchdog("wd-a", b, func(c *watchdog.Config) {
		c.AllowedImages = append(c.AllowedImages, probe)
		c.Runner.Env = append(c.Runner.Env, "PROBE_EXIT=1", "PROBE_LINES=3")
		c.Backoff = watchdog.BackoffPolicy{Base: time.Second, Max: 8 * time.Second}
	})
	testenv.Eventually(t, 10*time.Second, "watchdog leads", wd.Leader)
	s := startSampler(t, b)
	w.publish(stage, out, 200) // 200 s of work at the default 1 s per message: 4 containers

	// Watch a fixed window: the number of launches in it is what is measured.
	window := 14 * time.Second
	<-time.After(window)
	launched := len(s.launched(stage))
	t.Logf("%d launches in %s (4, then probes after 1 s, 2 s, 4 s, 8 s of backoff)", launched, window)
	// A storm would launch 4 per poll-and-exit cycle: over 20 in this window.
	if launched < 5 || launched > 8 {
		t.Errorf("%d launches in %s, want 5..8", launched, window)
	}
	if s.maxOf(stage) > 4 {
		t.Errorf("%d containers at once, max is 4", s.maxOf(stage))
	}
	failed := metric(t, wd, "pero_watchdog_failed_total", "reason", "internal", "stage", stage)
	if int(failed) < launched-1 {
		t.Errorf("failed_total{internal} = %v, launched %d", failed, launched)
	}
	st, err := w.status()
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := st.Find(stage); !ok || s.Failures < 2 {
		t.Errorf("status does not show the failures: %+v", st)
	}
	if n := w.ready(stage); n != 200 {
		t.Errorf("%d messages left, want all 200", n)
	}
}

// TestPrioritiesShareCapacity: two stages with backlogs share 2 CPU slots. The stage of higher
// administrative priority gets both first; the other waits and, aging one point per second, gets
// a slot when one frees while the first still has work: it is not starved. Never more than 2
// containers run at once.
func TestPrioritiesShareCapacity(t *testing.T) {
	w := newWorld(t)
	out := w.output()
	hi, lo := testenv.Unique("hi"), testenv.Unique("lo")
	sleep := "[sleep]\nseconds = 0.2\n"
	w.stage(zookeeper.Stage{Name: hi, Config: sleep, AdministrativePriority: 5, Settings: zookeeper.Settings{
		Function: "sleep", Image: w.image, MaxContainers: 2, BatchSize: 2, MaxBatches: 3,
		IdleTimeout: zookeeper.Duration(2 * time.Second),
	}})
	w.stage(zookeeper.Stage{Name: lo, Config: sleep, Settings: zookeeper.Settings{
		Function: "sleep", Image: w.image, MaxContainers: 2, BatchSize: 2,
		IdleTimeout: zookeeper.Duration(2 * time.Second),
	}})
	b := w.dockerBackend()
	wd := w.watchdog("wd-a", b, func(c *watchdog.Config) {
		c.CPUSlots = 2
		c.Policy.AgingInterval = time.Second
	})
	testenv.Eventually(t, 10*time.Second, "watchdog leads", wd.Leader)
	s := startSampler(t, b)
	w.publish(hi, out, 100)
	w.publish(lo, out, 10)

	testenv.Eventually(t, 180*time.Second, "both backlogs are processed", func() bool { return w.ready(out) == 110 })
	w.waitReaped(b, 60*time.Second)
	s.halt()
	if s.mostAlive() > 2 {
		t.Errorf("%d containers at once with 2 CPU slots", s.mostAlive())
	}
	his, los := s.launched(hi), s.launched(lo)
	t.Logf("%d containers of %s (priority 5), %d of %s (priority 0)", len(his), hi, len(los), lo)
	if len(his) < 2 || len(los) == 0 {
		t.Fatalf("launched %d hi, %d lo", len(his), len(los))
	}
	loFirst, _ := s.firstSeen(lo)
	for _, c := range his[:2] {
		if !s.first[c.ID].Before(loFirst) {
			t.Errorf("the first two containers were not all of the high-priority stage")
		}
	}
	if last := s.first[his[len(his)-1].ID]; !loFirst.Before(last) {
		t.Errorf("%s got its first container only after %s's last: starved", lo, hi)
	}
}

// TestSwarmBackendDrains: the same decisions on a one-node swarm: replicated-job services drain a
// backlog and are removed once they complete.
func TestSwarmBackendDrains(t *testing.T) {
	w := newWorld(t)
	testswarm.Ensure(t)
	out := w.output()
	stage := testenv.Unique("noop")
	w.stage(zookeeper.Stage{Name: stage, Settings: zookeeper.Settings{
		Function: "noop", Image: w.image, MaxContainers: 2, BatchSize: 8,
		IdleTimeout: zookeeper.Duration(3 * time.Second),
	}})
	sb, err := swarm.New(swarm.Config{Scope: w.scope, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	wd := w.watchdog("wd-s", sb, func(c *watchdog.Config) { c.Backend = "swarm" })
	testenv.Eventually(t, 10*time.Second, "watchdog leads", wd.Leader)
	s := startSampler(t, sb)
	published := time.Now()
	w.publish(stage, out, 60)
	testenv.Eventually(t, 30*time.Second, "a service appears", func() bool { _, ok := s.firstSeen(stage); return ok })
	first, _ := s.firstSeen(stage)
	t.Logf("first service %s after publishing", first.Sub(published).Round(time.Millisecond))
	testenv.Eventually(t, 120*time.Second, "the backlog is processed", func() bool { return w.ready(out) == 60 })
	w.waitReaped(sb, 60*time.Second)
	s.halt()
	launched := s.launched(stage)
	if s.maxOf(stage) > 2 || len(launched) == 0 {
		t.Errorf("%d services at once (max 2), %d launched", s.maxOf(stage), len(launched))
	}
	if n := metric(t, wd, "pero_watchdog_exited_total", "reason", "ok", "stage", stage); int(n) != len(launched) {
		t.Errorf("exited_total{ok} = %v, launched %d", n, len(launched))
	}
	t.Logf("%d services, at most %d at once", len(launched), s.maxOf(stage))
}
