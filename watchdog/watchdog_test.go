package watchdog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/zookeeper"
	"github.com/pero-worker/pero-worker/runner"
	"github.com/pero-worker/pero-worker/watchdog/status"
)

// fakeBackend keeps containers in memory.
type fakeBackend struct {
	mu         sync.Mutex
	containers map[string]*Container
	specs      []Spec
	seq        int
	launchErr  error
	removed    []string
	now        func() time.Time
}

func (f *fakeBackend) Launch(_ context.Context, s Spec) (Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.launchErr != nil {
		return Container{}, f.launchErr
	}
	f.seq++
	c := Container{ID: fmt.Sprint("id", f.seq), Name: s.Name, State: Up}
	FromLabels(&c, s.Labels)
	f.containers[c.ID] = &c
	f.specs = append(f.specs, s)
	return c, nil
}

func (f *fakeBackend) List(context.Context) ([]Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Container
	for _, c := range f.containers {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Container) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (f *fakeBackend) Logs(_ context.Context, id string, n int) (string, error) {
	return "boom\nexit 1", nil
}

func (f *fakeBackend) Remove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.containers, id)
	f.removed = append(f.removed, id)
	return nil
}

// exit marks every live container of stage as exited with code.
func (f *fakeBackend) exit(stage string, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.containers {
		if c.Stage == stage && c.State != Exited {
			c.State, c.ExitCode, c.Finished = Exited, code, f.now()
		}
	}
}

func (f *fakeBackend) alive(stage string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.containers {
		if c.Stage == stage && c.State != Exited {
			n++
		}
	}
	return n
}

type fakeStages struct{ stages map[string]zookeeper.Stage }

func (f *fakeStages) ListStages(context.Context) ([]string, error) {
	var names []string
	for n := range f.stages {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

func (f *fakeStages) GetStage(_ context.Context, name string) (zookeeper.Stage, error) {
	s, ok := f.stages[name]
	if !ok {
		return s, zookeeper.ErrNotFound
	}
	s.Name = name
	s.Settings = s.Settings.WithDefaults()
	return s, nil
}

func (f *fakeStages) SecondsPerMessage(_ context.Context, stage string) (float64, error) {
	return f.stages[stage].AvgMsgTime, nil
}

type fakeQueues struct{ counts map[string]QueueCounts }

func (f *fakeQueues) Counts(_ context.Context, queues []string) (map[string]QueueCounts, error) {
	out := map[string]QueueCounts{}
	var err error
	for _, q := range queues {
		if c, ok := f.counts[q]; ok {
			out[q] = c
		} else {
			err = errors.New("no queue " + q)
		}
	}
	return out, err
}

type fakeRunners struct {
	mu    sync.Mutex
	state map[string]string // container name -> state
}

func (f *fakeRunners) Runners(_ context.Context, stage string) ([]runner.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []runner.Status
	for c, s := range f.state {
		out = append(out, runner.Status{Container: c, Stage: stage, State: s})
	}
	return out, nil
}

type fakeStatus struct {
	mu   sync.Mutex
	last status.Status
	n    int
}

func (f *fakeStatus) Publish(_ context.Context, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return json.Unmarshal(data, &f.last)
}

func (f *fakeStatus) Clear(context.Context) error { return nil }

type rig struct {
	w       *Watchdog
	now     time.Time
	backend *fakeBackend
	stages  *fakeStages
	queues  *fakeQueues
	runners *fakeRunners
	status  *fakeStatus
}

func newRig(t *testing.T, cfg Config) *rig {
	r := &rig{now: t0}
	r.backend = &fakeBackend{containers: map[string]*Container{}, now: func() time.Time { return r.now }}
	r.stages = &fakeStages{stages: map[string]zookeeper.Stage{}}
	r.queues = &fakeQueues{counts: map[string]QueueCounts{}}
	r.runners = &fakeRunners{state: map[string]string{}}
	r.status = &fakeStatus{}
	cfg.ID = "wd-1"
	cfg.Now = func() time.Time { return r.now }
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.DefaultImage == "" {
		cfg.DefaultImage = "pero/function:1"
	}
	w, err := New(cfg, Deps{Backend: r.backend, Stages: r.stages, Queues: r.queues, Runners: r.runners, Status: r.status})
	if err != nil {
		t.Fatal(err)
	}
	r.w = w
	return r
}

func (r *rig) stage(name string, s zookeeper.Settings, ready int) {
	r.stages.stages[name] = zookeeper.Stage{Settings: s, ConfigVersion: "v1"}
	r.queues.counts[name] = QueueCounts{Ready: ready, Unacked: -1}
}

func (r *rig) poll(d time.Duration) {
	r.now = r.now.Add(d)
	r.w.poll(context.Background())
}

func TestPollLaunchesOnceForABacklog(t *testing.T) {
	r := newRig(t, Config{})
	r.stage("ocr", zookeeper.Settings{MaxContainers: 4}, 100)
	r.poll(0)
	if n := r.backend.alive("ocr"); n != 4 {
		t.Fatalf("first poll: %d containers, want 4", n)
	}
	// The launched containers count as starting until their runners report: no second launch.
	for range 5 {
		r.poll(time.Second)
	}
	if n := len(r.backend.specs); n != 4 {
		t.Fatalf("%d launches for one backlog, want 4", n)
	}
	// Runners running and holding 32 unacknowledged messages: still no launch.
	for _, s := range r.backend.specs {
		r.runners.state[s.Name] = runner.StateRunning
	}
	r.queues.counts["ocr"] = QueueCounts{Ready: 68, Unacked: 32, Consumers: 4}
	r.poll(time.Second)
	if n := len(r.backend.specs); n != 4 {
		t.Fatalf("%d launches, want 4", n)
	}
	st := r.status.last
	s, ok := st.Find("ocr")
	if !ok || s.Running != 4 || s.Backlog != 100 || s.Desired != 4 || st.Watchdog != "wd-1" {
		t.Fatalf("status: %+v", st)
	}

	// Spec: env, labels, cache volume.
	sp := r.backend.specs[0]
	for _, want := range []string{"PERO_STAGE=ocr", "PERO_CONTAINER_ID=" + sp.Name, "PERO_CACHE_DIR=" + DefaultCacheDir} {
		if want == "PERO_CACHE_DIR="+DefaultCacheDir {
			continue // no cache volume configured
		}
		if !slices.Contains(sp.Env, want) {
			t.Errorf("env lacks %q: %v", want, sp.Env)
		}
	}
	if sp.Labels[LabelStage] != "ocr" || sp.Labels[LabelConfigVersion] != "v1" || sp.Labels[LabelWatchdog] != "wd-1" ||
		sp.Image != "pero/function:1" || sp.StopTimeout != DefaultStopTimeout {
		t.Errorf("spec: %+v", sp)
	}

	// The queue drains; the runners exit 0 and are reaped.
	r.queues.counts["ocr"] = QueueCounts{Ready: 0, Unacked: 0, Consumers: 0}
	r.backend.exit("ocr", 0)
	r.runners.state = map[string]string{}
	r.poll(time.Second)
	if n := len(r.backend.removed); n != 4 {
		t.Fatalf("%d reaped, want 4", n)
	}
	r.poll(time.Second)
	if n := len(r.backend.specs); n != 4 {
		t.Fatalf("launched after the queue drained: %d", n)
	}
	if s, _ := r.status.last.Find("ocr"); s.Containers() != 0 {
		t.Fatalf("status after drain: %+v", s)
	}
}

func TestPollBacksOffAFailingStage(t *testing.T) {
	r := newRig(t, Config{Backoff: BackoffPolicy{Base: 4 * time.Second, Max: time.Minute}})
	r.stage("bad", zookeeper.Settings{MaxContainers: 4}, 100)
	r.poll(0)
	if n := len(r.backend.specs); n != 4 {
		t.Fatalf("first poll launched %d", n)
	}
	r.backend.exit("bad", 1)
	r.poll(time.Second) // reaps four failures: one generation, backoff 4-4.8 s
	if h := r.w.stages["bad"].health; h.Failures != 1 || h.LastExitCode != 1 {
		t.Fatalf("health: %+v", h)
	}
	for range 3 {
		r.poll(time.Second)
	}
	if n := len(r.backend.specs); n != 4 {
		t.Fatalf("launched during backoff: %d", n)
	}
	r.poll(2 * time.Second)
	if n := len(r.backend.specs); n != 5 {
		t.Fatalf("after the backoff: %d launches, want one probe (5)", n)
	}
	r.poll(time.Second)
	if n := len(r.backend.specs); n != 5 {
		t.Fatalf("launched a second container beside the probe: %d", n)
	}
	r.backend.exit("bad", 1)
	r.poll(time.Second)
	if h := r.w.stages["bad"].health; h.Failures != 2 {
		t.Fatalf("probe failure not counted: %+v", h)
	}
	if s, _ := r.status.last.Find("bad"); s.Failures != 2 || s.BackoffUntil.IsZero() {
		t.Fatalf("status: %+v", s)
	}
	// A new configuration version forgives the failures.
	st := r.stages.stages["bad"]
	st.ConfigVersion = "v2"
	r.stages.stages["bad"] = st
	r.poll(time.Second)
	if n := len(r.backend.specs); n != 9 {
		t.Fatalf("after a config change: %d launches, want 9", n)
	}
}

func TestPollLaunchErrorBacksOff(t *testing.T) {
	r := newRig(t, Config{Backoff: BackoffPolicy{Base: 10 * time.Second}})
	r.stage("ocr", zookeeper.Settings{MaxContainers: 2}, 100)
	r.backend.launchErr = errors.New("no such image")
	r.poll(0)
	if h := r.w.stages["ocr"].health; h.Failures != 1 || !h.Until.After(r.now) {
		t.Fatalf("health after launch errors: %+v", h)
	}
	r.backend.launchErr = nil
	r.poll(time.Second)
	if n := len(r.backend.specs); n != 0 {
		t.Fatalf("launched during backoff: %d", n)
	}
}

func TestPollHoldsStagesItMayNotLaunch(t *testing.T) {
	r := newRig(t, Config{AllowedImages: []string{"pero/*:*"}})
	r.stage("out", zookeeper.Settings{Output: true}, 100)
	r.stage("evil", zookeeper.Settings{Image: "evil/miner:latest"}, 100)
	r.stage("ok", zookeeper.Settings{Image: "pero/other:2"}, 100)
	r.stage("noqueue", zookeeper.Settings{}, 0)
	delete(r.queues.counts, "noqueue")
	r.stage("minonly", zookeeper.Settings{MinContainers: 1}, 0)
	delete(r.queues.counts, "minonly")
	r.poll(0)
	var images []string
	for _, s := range r.backend.specs {
		images = append(images, s.Labels[LabelStage]+"="+s.Image)
	}
	if !slices.Equal(images, []string{"ok=pero/other:2"}) {
		t.Fatalf("launched %v", images)
	}
	held := map[string]string{}
	for _, s := range r.status.last.Stages {
		held[s.Name] = s.Held
	}
	want := map[string]string{"out": blockedOutput, "evil": blockedImage, "ok": HeldMax, "noqueue": blockedQueue,
		"minonly": blockedQueue}
	for k, v := range want {
		if held[k] != v {
			t.Errorf("%s held %q, want %q", k, held[k], v)
		}
	}
}

func TestPollAdoptsAndCleansUp(t *testing.T) {
	r := newRig(t, Config{StalePending: time.Minute, CPUSlots: 3})
	r.stage("ocr", zookeeper.Settings{MaxContainers: 4}, 100)
	// Containers of a predecessor: two running, one never started (stale), one of a deleted stage.
	add := func(id, stage string, state State, created time.Time) {
		c := Container{ID: id, Name: "c-" + id, State: state, Created: created}
		FromLabels(&c, Labels("", stage, "v1", "wd-0", nil, created))
		r.backend.containers[id] = &c
	}
	add("a", "ocr", Up, t0.Add(-time.Minute))
	add("b", "ocr", Up, t0.Add(-time.Minute))
	add("c", "ocr", Pending, t0.Add(-2*time.Minute))
	add("d", "gone", Up, t0.Add(-time.Minute))
	r.runners.state["c-a"] = runner.StateRunning
	r.runners.state["c-b"] = runner.StateDraining
	r.poll(0)
	if !slices.Equal(r.backend.removed, []string{"c"}) {
		t.Fatalf("removed %v, want the stale pending container", r.backend.removed)
	}
	// 3 slots: a, b and the deleted stage's d take them all (c is removed only this poll).
	if n := len(r.backend.specs); n != 0 {
		t.Fatalf("launched %d with the capacity taken", n)
	}
	s, _ := r.status.last.Find("ocr")
	if s.Running != 1 || s.Draining != 1 || s.Starting != 1 {
		t.Fatalf("adopted: %+v", s)
	}
	r.backend.exit("gone", 0)
	r.poll(time.Second)
	if n := len(r.backend.specs); n != 1 {
		t.Fatalf("launched %d when one slot freed, want 1", n)
	}
}

func TestPollGPULedger(t *testing.T) {
	r := newRig(t, Config{GPUs: []string{"0", "1"}})
	r.stage("ocr", zookeeper.Settings{MaxContainers: 4, GPUs: 1}, 100)
	c := Container{ID: "x", Name: "c-x", State: Up, Created: t0}
	FromLabels(&c, Labels("", "ocr", "v1", "wd-0", []string{"1"}, t0))
	r.backend.containers["x"] = &c
	r.poll(0)
	if len(r.backend.specs) != 1 || !slices.Equal(r.backend.specs[0].GPUs, []string{"0"}) ||
		r.backend.specs[0].Labels[LabelGPUs] != "0" {
		t.Fatalf("specs: %+v", r.backend.specs)
	}
	if r.status.last.GPUsUsed != 1 || r.status.last.GPUs != 2 {
		t.Fatalf("status: %+v", r.status.last)
	}
}

func TestHandler(t *testing.T) {
	r := newRig(t, Config{})
	r.stage("ocr", zookeeper.Settings{MaxContainers: 2}, 10)
	r.poll(0)
	h := r.w.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`pero_watchdog_backlog_messages{stage="ocr"} 10`,
		`pero_watchdog_desired_containers{stage="ocr"} 1`,
		`pero_watchdog_launched_total{stage="ocr"} 1`,
		`pero_watchdog_containers{stage="ocr",state="starting"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 {
		t.Errorf("healthz = %d %s", rec.Code, rec.Body)
	}
	r.w.Stop()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 503 {
		t.Errorf("healthz after Stop = %d", rec.Code)
	}
}

func TestContainerName(t *testing.T) {
	for stage, want := range map[string]string{
		"ocr":                         "pero-ocr-ab12",
		"det ect/ü":                   "pero-det_ect__-ab12",
		"a.b_c-d":                     "pero-a.b_c-d-ab12",
		"x" + strings.Repeat("y", 80): "pero-x" + strings.Repeat("y", 35) + "-ab12",
	} {
		if got := containerName(stage, "ab12"); got != want {
			t.Errorf("containerName(%q) = %q, want %q", stage, got, want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	_, err := New(Config{AllowedImages: []string{"["}, CPUSlots: -1}, Deps{})
	for _, want := range []string{"id: required", "deps:", "allowed_images", "cpu_slots"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New error %v lacks %q", err, want)
		}
	}
}
