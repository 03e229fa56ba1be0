package watchdog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Watchdog. Zero values take the defaults named on each field.
type Config struct {
	// ID names this watchdog in labels, logs and the election. Required.
	ID string
	// Backend names the backend in the published status ("docker", "swarm"). Default "docker".
	Backend string
	// PollInterval spaces the polls. Default 1s.
	PollInterval time.Duration
	// Policy sizes the stages (target drain time, default speed, aging).
	Policy Policy
	// Backoff paces relaunches of failing stages.
	Backoff BackoffPolicy
	// CPUSlots is the capacity shared by all stages: a container takes ceil(cpus) slots of its
	// stage (1 when the stage sets no CPU limit). 0 means unlimited.
	CPUSlots int
	// GPUs are the device IDs the watchdog hands out ("0", "1" or GPU UUIDs); none by default.
	GPUs []string
	// GPUShare is how many containers may hold one GPU at once. Default 1.
	GPUShare int
	// DefaultImage is the image of stages whose settings name none; "" means such stages are
	// not launched. It is always allowed.
	DefaultImage string
	// AllowedImages are the images (path.Match patterns such as "registry/pero/*:*") that may be
	// launched besides DefaultImage; a stage naming another image is held. Empty: only
	// DefaultImage.
	AllowedImages []string
	// Runner is how the containers run.
	Runner RunnerConfig
	// LogLines is how many last lines of an exited container's output are logged when it failed.
	// Default 20.
	LogLines int
	// StalePending: a container created but not started for this long (its launcher died between
	// the two) is removed. Default 2m.
	StalePending time.Duration
	// LaunchConcurrency bounds the launches in flight at once. Default 4.
	LaunchConcurrency int
	// Logger receives the watchdog's logs. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// RunnerConfig is how the function containers run.
type RunnerConfig struct {
	// Env is given to every container besides PERO_STAGE and PERO_CONTAINER_ID: the ZooKeeper
	// address and root, the broker's vhost, credentials or the paths of their files.
	Env []string
	// Mounts are added to every container (secret files, read-only).
	Mounts []Mount
	// Network is "host" or a network name; "" means the engine's default network.
	Network string
	// CacheVolume is the Docker volume of the model cache, shared by the containers of a host; ""
	// means none (each container downloads its model into an anonymous volume of its own).
	CacheVolume string
	// CacheDir is where the volume is mounted in the container. Default /var/cache/pero, the
	// runner's default PERO_CACHE_DIR.
	CacheDir string
	// PidsLimit limits each container's processes and threads; 0 means no limit.
	PidsLimit int64
	// StopTimeout is how long a stop lets the runner drain before the engine kills it. Default
	// 35s: the runner's grace period (25s) and some margin.
	StopTimeout time.Duration
}

// Deps are the Watchdog's connections to the world.
type Deps struct {
	// Backend runs the containers. Required.
	Backend Backend
	// Stages reads the configuration (a *zookeeper.Store). Required.
	Stages StageSource
	// Queues reads the queue counts (BrokerQueues). Required.
	Queues QueueSource
	// Runners reads the runners' status nodes (ZKRunners). Required.
	Runners RunnerSource
	// Status, when not nil, receives the status `pero status` shows (ZKStatus).
	Status StatusSink
	// Elector, when not nil, makes the watchdog act only while it leads; nil means it always
	// leads (a single watchdog).
	Elector *Elector
}

// Defaults of Config.
const (
	DefaultPollInterval = time.Second
	DefaultLogLines     = 20
	DefaultStalePending = 2 * time.Minute
	DefaultCacheDir     = "/var/cache/pero"
	DefaultStopTimeout  = 35 * time.Second
)

// Watchdog watches the stages' queues and runs their containers.
type Watchdog struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics

	// Loop state, touched only by the poll loop.
	stages      map[string]*stageState
	spmCache    map[string]cachedFloat
	reaped      map[string]time.Time // container ID -> when it was reaped (removal may lag)
	lastStatus  []byte
	lastPublish time.Time

	errMu      sync.Mutex
	sourceErrs map[string]sourceErr

	lastTick  atomic.Int64 // unix nanoseconds of the last poll that completed
	leadStart atomic.Int64 // unix nanoseconds when the current term began
	stopping  atomic.Bool

	startOnce, stopOnce sync.Once
	cancel              context.CancelFunc
	wg                  sync.WaitGroup
}

// stageState is what the loop remembers of a stage between polls.
type stageState struct {
	health        Health
	configVersion string
	waitingSince  time.Time
	unservedSince time.Time // backlog seen with no runner consuming: the reaction clock
}

// New returns a Watchdog; Start runs it.
func New(cfg Config, deps Deps) (*Watchdog, error) {
	var errs []error
	if cfg.ID == "" {
		errs = append(errs, errors.New("id: required"))
	}
	if deps.Backend == nil || deps.Stages == nil || deps.Queues == nil || deps.Runners == nil {
		errs = append(errs, errors.New("deps: backend, stages, queues and runners are required"))
	}
	for _, p := range cfg.AllowedImages {
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("allowed_images: %q: %w", p, err))
		}
	}
	if cfg.CPUSlots < 0 {
		errs = append(errs, errors.New("cpu_slots: must be >= 0"))
	}
	if cfg.GPUShare < 0 {
		errs = append(errs, errors.New("gpu_share: must be >= 0"))
	}
	if cfg.PollInterval < 0 {
		errs = append(errs, errors.New("poll_interval: must be positive"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("watchdog: %w", errors.Join(errs...))
	}
	cfg.Backend = cmp.Or(cfg.Backend, "docker")
	cfg.PollInterval = cmp.Or(cfg.PollInterval, DefaultPollInterval)
	cfg.Policy = cfg.Policy.withDefaults()
	cfg.Backoff = cfg.Backoff.withDefaults()
	cfg.GPUShare = cmp.Or(cfg.GPUShare, 1)
	cfg.LogLines = cmp.Or(cfg.LogLines, DefaultLogLines)
	cfg.StalePending = cmp.Or(cfg.StalePending, DefaultStalePending)
	cfg.LaunchConcurrency = cmp.Or(cfg.LaunchConcurrency, 4)
	cfg.Runner.CacheDir = cmp.Or(cfg.Runner.CacheDir, DefaultCacheDir)
	cfg.Runner.StopTimeout = cmp.Or(cfg.Runner.StopTimeout, DefaultStopTimeout)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	w := &Watchdog{
		cfg:        cfg,
		deps:       deps,
		log:        cmp.Or(cfg.Logger, slog.Default()).With("component", "watchdog", "watchdog", cfg.ID),
		now:        cfg.Now,
		metrics:    newMetrics(),
		stages:     map[string]*stageState{},
		spmCache:   map[string]cachedFloat{},
		reaped:     map[string]time.Time{},
		sourceErrs: map[string]sourceErr{},
	}
	w.metrics.slots.Set(float64(cfg.CPUSlots))
	w.metrics.gpus.Set(float64(len(cfg.GPUs)))
	return w, nil
}

// Start runs the watchdog in the background until Stop or ctx ends: it takes part in the
// election when it has an Elector, and polls while it leads.
func (w *Watchdog) Start(ctx context.Context) error {
	started := false
	w.startOnce.Do(func() {
		started = true
		ctx, w.cancel = context.WithCancel(ctx)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			if w.deps.Elector != nil {
				w.deps.Elector.Run(ctx, w.lead)
				return
			}
			w.lead(ctx)
		}()
	})
	if !started {
		return errors.New("watchdog: already started")
	}
	return nil
}

// Stop stops launching and returns when the poll in progress has finished. Running containers
// are left alone: they exit by themselves when their queue stays empty, and the next watchdog to
// lead adopts them. Safe to call twice and before Start.
func (w *Watchdog) Stop() {
	w.stopOnce.Do(func() {
		w.stopping.Store(true)
		w.startOnce.Do(func() {}) // a later Start does nothing
		if w.cancel != nil {
			w.cancel()
		}
		w.wg.Wait()
	})
}

// Leader reports whether the watchdog leads now.
func (w *Watchdog) Leader() bool {
	if w.deps.Elector == nil {
		return !w.stopping.Load()
	}
	return w.deps.Elector.Leader()
}

// Handler serves /metrics (Prometheus) and /healthz.
func (w *Watchdog) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", w.metrics.handler())
	mux.HandleFunc("/healthz", w.healthz)
	return mux
}

// healthz answers 200 while the watchdog stands by or polls, and 503 once it is stopping or when
// its polls have stalled while it leads.
func (w *Watchdog) healthz(rw http.ResponseWriter, _ *http.Request) {
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if w.stopping.Load() {
		rw.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(rw, "stopping")
		return
	}
	if !w.Leader() {
		fmt.Fprintln(rw, "ok: standing by")
		return
	}
	last := time.Unix(0, w.lastTick.Load())
	if stale := max(10*time.Second, 5*w.cfg.PollInterval); w.lastTick.Load() == 0 || w.now().Sub(last) > stale {
		// Just elected, the first poll may not have ended: allow it the same margin.
		if w.lastTick.Load() != 0 || w.now().Sub(w.leadSince()) > stale {
			rw.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(rw, "leading, but no poll completed for %s\n", stale)
			return
		}
	}
	fmt.Fprintln(rw, "ok: leading")
}

func (w *Watchdog) leadSince() time.Time { return time.Unix(0, w.leadStart.Load()) }

// lead polls until ctx ends (leadership lost or Stop).
func (w *Watchdog) lead(ctx context.Context) {
	w.leadStart.Store(w.now().UnixNano())
	w.lastTick.Store(0)
	w.metrics.leader.Set(1)
	defer w.metrics.leader.Set(0)
	// A new term starts from what it observes: health records and waits are rebuilt.
	w.stages = map[string]*stageState{}
	w.lastStatus = nil
	defer func() {
		if w.deps.Status != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := w.deps.Status.Clear(cctx); err != nil {
				w.log.Debug("clear status", "err", err)
			}
		}
	}()
	w.log.Info("polling", "interval", w.cfg.PollInterval, "backend", w.cfg.Backend)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			w.log.Info("stopped polling; running containers are left to finish")
			return
		case <-timer.C:
		}
		start := w.now()
		w.poll(ctx)
		timer.Reset(max(w.cfg.PollInterval-w.now().Sub(start), 0))
	}
}

// poll is one round: observe, reap, decide, launch, publish. Its work runs on a context that
// outlives ctx by a bounded time, so that a launch under way when leadership ends completes or
// fails cleanly; nothing new starts once ctx has ended.
func (w *Watchdog) poll(ctx context.Context) {
	start := w.now()
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), pollWorkTimeout)
	defer cancel()
	obs := w.observe(work)
	if obs.containersOK {
		w.reap(work, obs)
	}
	plan, views := w.plan(obs)
	var launched map[string]int
	if ctx.Err() == nil && obs.containersOK && obs.stagesOK {
		launched = w.launch(ctx, work, plan, obs)
	}
	for i := range views {
		views[i].Starting += launched[views[i].Name]
	}
	w.report(work, obs, plan, views)
	w.metrics.tick.Observe(w.now().Sub(start).Seconds())
	w.lastTick.Store(w.now().UnixNano())
}

// pollWorkTimeout bounds one poll's calls to the outside.
const pollWorkTimeout = 60 * time.Second

func allowedImage(image, defaultImage string, allowed []string) bool {
	if image == "" {
		return false
	}
	if image == defaultImage {
		return true
	}
	for _, p := range allowed {
		if ok, _ := path.Match(p, image); ok {
			return true
		}
	}
	return false
}

// containerName makes a container name for stage: "pero-<stage>-<random>", with the characters
// Docker does not allow in names replaced.
func containerName(stage, random string) string {
	var b strings.Builder
	b.WriteString("pero-")
	for _, r := range stage {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() > 40 {
			break
		}
	}
	b.WriteString("-")
	b.WriteString(random)
	return b.String()
}
