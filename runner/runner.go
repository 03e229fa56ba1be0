package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/pero-worker/pero-worker/function"
	"github.com/pero-worker/pero-worker/internal/ftpstore"
	"github.com/pero-worker/pero-worker/internal/message"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
	"github.com/pero-worker/pero-worker/internal/version"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

// Why a runner ended without an error (Result.Reason).
const (
	ReasonIdle          = "idle"           // the queue stayed empty for idle_timeout
	ReasonMaxBatches    = "max-batches"    // it processed max_batches batches
	ReasonMaxLifetime   = "max-lifetime"   // it ran for max_lifetime
	ReasonStopped       = "stopped"        // Stop (a signal)
	ReasonConfigChanged = "config-changed" // the stage's config_version changed: a new runner takes the new model
	ReasonStageDeleted  = "stage-deleted"  // the stage disappeared from ZooKeeper
)

var (
	errStopped       = errors.New("stopped")
	errConfigChanged = errors.New("stage configuration changed")
	errStageDeleted  = errors.New("stage deleted")
	errShutdown      = errors.New("grace period over")
	errBatchTimeout  = errors.New("batch timeout")
	errPanic         = errors.New("function panicked")
	errHung          = errors.New("function did not return")
	errLinkLost      = errors.New("lost the broker")
	errRefInput      = errors.New("the input image is stored by reference (ref), which this runner cannot fetch")
)

const (
	// hangGrace is how long the runner waits for the function after its context ended before it
	// gives up on it and exits with ExitFunction.
	hangGrace = 10 * time.Second
	// maxPanics is how many batches in a row may panic before the runner exits with ExitFunction.
	maxPanics = 3
)

// Deps are what a Runner takes besides its Config.
type Deps struct {
	// Registry holds the functions a stage may name. Required.
	Registry *function.Registry
	// Logger receives the runner's logs. Default: NewLogger(cfg, os.Stderr).
	Logger *slog.Logger
	// Clock paces the runner's waits. Default: the system clock.
	Clock Clock
}

// Result says how a runner ended.
type Result struct {
	// Reason is one of the Reason constants; empty when the runner failed.
	Reason       string
	Batches      int64
	Messages     int64 // pages processed by the function
	Failed       int64 // pages sent to the output stage with status Failed
	DeadLettered int64
}

// Runner serves one stage: it prepares the stage's model and function, then takes batches from
// the stage's queue, forwards every result and ends by the exit rules (see the package doc).
type Runner struct {
	cfg   Config
	reg   *function.Registry
	log   *slog.Logger
	clock Clock
	cnt   counters

	hardCtx     context.Context // ends the helper goroutines at teardown
	hardCancel  context.CancelFunc
	fetchCtx    context.Context // ends taking messages: Stop, a config change, the stage's deletion
	fetchCancel context.CancelCauseFunc
	workCtx     context.Context // ends the function's work: the grace period after Stop is over
	workCancel  context.CancelCauseFunc

	mu      sync.Mutex
	started bool
	cons    *consumer   // current consumer, cancelled at once by Stop
	status  *statusNode // nil until ZooKeeper is reached

	stopOnce sync.Once
	graceWG  sync.WaitGroup
	wg       sync.WaitGroup // the stage watch
	done     chan struct{}
	result   Result
	err      error

	// Opened by Start, closed by teardown.
	zk        *zookeeper.Store
	stage     zookeeper.Stage
	settings  zookeeper.Settings
	model     *Model
	fn        function.Function
	mq        *rabbitmq.Session
	stats     *stats
	suspects  suspectRecords
	startedAt time.Time
	panics    int
}

// NewRunner checks the dependencies; it connects to nothing.
func NewRunner(cfg Config, deps Deps) (*Runner, error) {
	if deps.Registry == nil {
		return nil, errors.New("runner: Deps.Registry is required")
	}
	if cfg.Stage == "" || cfg.ContainerID == "" {
		return nil, errors.New("runner: Config.Stage and Config.ContainerID are required (build the Config with New)")
	}
	r := &Runner{cfg: cfg, reg: deps.Registry, log: deps.Logger, clock: deps.Clock, done: make(chan struct{})}
	if r.log == nil {
		r.log = NewLogger(cfg, os.Stderr)
	}
	if r.clock == nil {
		r.clock = systemClock{}
	}
	r.hardCtx, r.hardCancel = context.WithCancel(context.Background())
	r.fetchCtx, r.fetchCancel = context.WithCancelCause(r.hardCtx)
	r.workCtx, r.workCancel = context.WithCancelCause(r.hardCtx)
	return r, nil
}

// NewLogger builds the runner's logger from LOG_LEVEL and LOG_FORMAT: JSON (or text) lines on w,
// each with the stage and the container.
func NewLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.LogFormat == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h).With("stage", cfg.Stage, "container", cfg.ContainerID)
}

// Start connects to ZooKeeper, reads the stage, makes its model ready, initialises the
// function, connects to RabbitMQ and starts consuming. It returns once messages flow, or with
// an *ExitError saying what failed; no message has been taken then. Stop during Start aborts
// it with ExitOK. ctx bounds Start only.
func (r *Runner) Start(ctx context.Context) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return errors.New("runner: Start called twice")
	}
	r.started = true
	r.mu.Unlock()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	unwatch := context.AfterFunc(r.fetchCtx, func() { cancel(errStopped) })
	defer unwatch()

	if err := r.setup(ctx); err != nil {
		if errors.Is(context.Cause(ctx), errStopped) {
			err = &ExitError{Code: ExitOK, Err: fmt.Errorf("stopped while starting: %w", err)}
		}
		if ExitCode(err) == ExitOK {
			r.log.Info("stopped while starting")
		} else {
			r.log.Error("runner failed to start", "exit_code", ExitCode(err), "err", err)
		}
		r.teardown()
		r.finish(Result{}, err)
		return err
	}
	go r.run()
	return nil
}

// Stop stops taking messages at once, lets the current batch finish within the grace period
// (then cancels it and hands its unfinished pages back), hands back every message not started,
// and closes everything. It returns when the runner is done. Safe twice and before Start.
func (r *Runner) Stop() {
	r.stopOnce.Do(func() {
		r.fetchCancel(errStopped)
		r.mu.Lock()
		cons, status, started := r.cons, r.status, r.started
		r.mu.Unlock()
		if status != nil {
			status.set(func(s *Status) { s.State = StateDraining })
		}
		if cons != nil {
			cons.cancel()
		}
		if !started {
			return
		}
		select {
		case <-r.done:
			return // already ended by itself
		default:
		}
		r.log.Info("stopping: finishing the current batch", "grace", r.cfg.GracePeriod)
		r.graceWG.Add(1)
		go func() {
			defer r.graceWG.Done()
			t := r.clock.NewTimer(r.cfg.GracePeriod)
			defer t.Stop()
			select {
			case <-r.done:
			case <-t.C():
				r.log.Warn("grace period over: cancelling the current batch")
				r.workCancel(errShutdown)
			}
		}()
	})
	r.mu.Lock()
	started := r.started
	r.mu.Unlock()
	if started {
		<-r.done
	}
	r.graceWG.Wait()
}

// Abort cuts the grace period short: the current batch is cancelled now and its unfinished pages
// are handed back. It implies Stop but does not wait.
func (r *Runner) Abort() {
	r.workCancel(errShutdown)
	go r.Stop()
}

// Done is closed when the runner has ended.
func (r *Runner) Done() <-chan struct{} { return r.done }

// Wait waits until the runner ends (call Start first) and says how: a nil error for a normal
// end, else an error whose ExitCode is the process's exit code.
func (r *Runner) Wait() (Result, error) {
	<-r.done
	return r.result, r.err
}

func (r *Runner) finish(res Result, err error) {
	res.Batches = r.cnt.batches.Load()
	res.Messages = r.cnt.messages.Load()
	res.Failed = r.cnt.failed.Load()
	res.DeadLettered = r.cnt.deadLettered.Load()
	r.result, r.err = res, err
	close(r.done)
}

func (r *Runner) run() {
	reason, err := r.serve()
	r.teardown()
	if err != nil {
		r.log.Error("runner failed", "exit_code", ExitCode(err), "err", err,
			"batches", r.cnt.batches.Load(), "messages", r.cnt.messages.Load())
	} else {
		r.log.Info("runner finished", "reason", reason, "batches", r.cnt.batches.Load(),
			"messages", r.cnt.messages.Load(), "failed", r.cnt.failed.Load(),
			"dead_lettered", r.cnt.deadLettered.Load(), "handed_back", r.cnt.handedBack.Load(),
			"uptime", r.clock.Now().Sub(r.startedAt).Round(time.Millisecond))
	}
	r.finish(Result{Reason: reason}, err)
}

// setup is Start's work; on error the caller tears down what it opened.
func (r *Runner) setup(ctx context.Context) error {
	r.startedAt = r.clock.Now()
	cfg := r.cfg
	r.log.Info("runner starting", "version", version.Version, "zookeeper", cfg.ZooKeeper, "root", cfg.ZKRoot)

	zkStore, err := zookeeper.Dial(ctx, zookeeper.Config{
		Servers: cfg.ZooKeeper, Root: cfg.ZKRoot, ConnectTimeout: cfg.ConnectTimeout, Auth: cfg.ZKAuth,
		Logger: r.log.With("component", "zookeeper"),
	})
	if err != nil {
		return exitErr(ExitUnavailable, fmt.Errorf("connect to ZooKeeper: %w", err))
	}
	r.zk = zkStore
	r.stage, err = zkStore.GetStage(ctx, cfg.Stage)
	if errors.Is(err, zookeeper.ErrNotFound) {
		return exitErrf(ExitConfig, "stage %q does not exist under %s: create it with `pero stage create`", cfg.Stage, cfg.ZKRoot)
	}
	if err != nil {
		return exitErr(ExitUnavailable, err)
	}
	if r.settings, err = cfg.Settings(r.stage.Settings); err != nil {
		return exitErr(ExitConfig, err)
	}
	s := r.settings
	status := newStatusNode(zkStore, Status{
		Container: cfg.ContainerID, Host: cfg.HostID, Stage: cfg.Stage, State: StateStarting, PID: os.Getpid(),
		Version: version.Version, Function: s.Function, BatchSize: s.BatchSize, ConfigVersion: r.stage.ConfigVersion,
		Started: r.startedAt.UTC(),
	}, 2*time.Second, &r.cnt, r.clock, r.log.With("component", "status"))
	r.mu.Lock()
	r.status = status
	r.mu.Unlock()
	status.Start(r.hardCtx)

	if s.Output {
		return exitErrf(ExitConfig, "stage %q is an output stage: no runner serves it", cfg.Stage)
	}
	if !slices.Contains(r.reg.Names(), s.Function) {
		return exitErrf(ExitConfig, "stage %q: unknown function %q (this image has: %v)", cfg.Stage, s.Function, r.reg.Names())
	}
	r.log.Info("stage read", "function", s.Function, "batch_size", s.BatchSize, "config_version", r.stage.ConfigVersion,
		"model", r.stage.ConfigPath, "idle_timeout", time.Duration(s.IdleTimeout), "max_lifetime", time.Duration(s.MaxLifetime),
		"max_batches", s.MaxBatches, "max_deliveries", s.MaxDeliveries, "batch_timeout", time.Duration(s.BatchTimeout))

	var dir string
	if r.stage.ConfigPath != "" {
		if err := r.openModel(ctx); err != nil {
			return err
		}
		dir = r.model.Dir
	}
	t0 := r.clock.Now()
	r.fn, err = r.reg.New(ctx, s.Function, function.Options{Dir: dir, Config: r.stage.Config,
		Logger: r.log.With("component", "function", "function", s.Function)})
	if err != nil {
		return exitErr(ExitModel, fmt.Errorf("initialise function %q: %w", s.Function, err))
	}
	r.log.Info("function ready", "function", s.Function, "took", r.clock.Now().Sub(t0).Round(time.Millisecond))

	if err := r.connectMQ(ctx); err != nil {
		return err
	}
	r.stats = &stats{store: zkStore, stage: cfg.Stage, container: cfg.ContainerID, interval: cfg.StatsInterval,
		clock: r.clock, log: r.log.With("component", "stats"), counters: &r.cnt}
	r.stats.Start(r.hardCtx)
	r.suspects = newSuspectLog(zkStore, cfg.Stage, r.clock)
	r.watchStage()
	return nil
}

// openModel makes the stage's model ready in the cache.
func (r *Runner) openModel(ctx context.Context) error {
	servers, err := r.zk.Servers(ctx, zookeeper.FTPServers)
	if errors.Is(err, zookeeper.ErrNoServers) {
		return exitErr(ExitConfig, fmt.Errorf("stage %q has a model archive but %w: add one with `pero servers add ftp`", r.cfg.Stage, err))
	}
	if err != nil {
		return exitErr(ExitUnavailable, err)
	}
	cache, err := NewCache(CacheConfig{Dir: r.cfg.CacheDir, MaxBytes: r.cfg.CacheMaxBytes, Limits: r.cfg.Extract,
		Logger: r.log.With("component", "cache"), Clock: r.clock})
	if err != nil {
		return exitErr(ExitConfig, fmt.Errorf("PERO_CACHE_DIR: %w", err))
	}
	if r.stage.ModelSHA256 == "" {
		r.log.Warn("stage has no model_sha256: the archive is not verified and is downloaded on every start",
			"model", r.stage.ConfigPath)
	}
	t0 := r.clock.Now()
	m, err := cache.Open(ctx, r.stage.ModelSHA256, r.fetcher(servers, r.stage.ConfigPath))
	if err != nil {
		return exitErr(modelExitCode(err), fmt.Errorf("model %s: %w", r.stage.ConfigPath, err))
	}
	r.model = m
	r.log.Info("model ready", "model", r.stage.ConfigPath, "sha256", m.SHA256, "bytes", m.Bytes, "fetched", m.Fetched,
		"took", r.clock.Now().Sub(t0).Round(time.Millisecond))
	return nil
}

// fetcher downloads remote from the first file server that has it.
func (r *Runner) fetcher(servers []string, remote string) Fetcher {
	return func(ctx context.Context, local, sum string) error {
		var errs []error
		for _, addr := range servers {
			tlsCfg := r.cfg.FTPTLS
			if tlsCfg != nil && tlsCfg.ServerName == "" {
				tlsCfg = tlsCfg.Clone()
				tlsCfg.ServerName, _, _ = net.SplitHostPort(addr)
			}
			st, err := ftpstore.New(ftpstore.Config{Addr: addr, User: r.cfg.FTP.User, Password: r.cfg.FTP.Password,
				TLS: tlsCfg, Logger: r.log.With("component", "ftp")})
			if err != nil {
				return exitErr(ExitConfig, err)
			}
			_, err = st.DownloadFile(ctx, remote, local, sum)
			if err == nil {
				return nil
			}
			if errors.Is(err, ftpstore.ErrChecksum) || ctx.Err() != nil {
				return err
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
}

// modelExitCode tells an unreachable file server from a bad model.
func modelExitCode(err error) int {
	var ee *ExitError
	var ne net.Error
	switch {
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, ftpstore.ErrNotFound), errors.Is(err, ftpstore.ErrChecksum), errors.Is(err, ErrChecksumMismatch),
		errors.Is(err, ErrUnsafeArchive), errors.Is(err, ErrArchiveTooLarge), errors.Is(err, ErrCorruptArchive),
		// A full cache is the model not fitting, not a service down (a syscall.Errno passes for
		// a net.Error below).
		errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return ExitModel
	case errors.Is(err, ftpstore.ErrAuth), errors.As(err, &ne), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EHOSTUNREACH):
		return ExitUnavailable
	}
	return ExitModel
}

// connectMQ dials RabbitMQ (retrying until ConnectTimeout) and declares the stage's queues.
func (r *Runner) connectMQ(ctx context.Context) error {
	addrs, err := r.zk.Servers(ctx, zookeeper.MQServers)
	if errors.Is(err, zookeeper.ErrNoServers) {
		return exitErr(ExitConfig, fmt.Errorf("%w: add the broker with `pero servers add mq`", err))
	}
	if err != nil {
		return exitErr(ExitUnavailable, err)
	}
	mqCfg := rabbitmq.Config{
		Addrs: addrs, User: r.cfg.MQ.User, Password: r.cfg.MQ.Password, VHost: r.cfg.MQVHost, TLS: r.cfg.MQTLS,
		ConnectTimeout: min(r.cfg.ConnectTimeout, 10*time.Second),
		ConnectionName: "pero-runner " + r.cfg.Stage + " " + r.cfg.ContainerID,
		Logger:         r.log.With("component", "rabbitmq"),
	}
	deadline := r.clock.Now().Add(r.cfg.ConnectTimeout)
	for n := 0; ; n++ {
		r.mq, err = rabbitmq.DialWithRecovery(ctx, mqCfg)
		if err == nil {
			break
		}
		wait := backoff(n, 500*time.Millisecond, 5*time.Second)
		if errors.Is(err, rabbitmq.ErrAuth) || ctx.Err() != nil || r.clock.Now().Add(wait).After(deadline) {
			return exitErr(ExitUnavailable, fmt.Errorf("connect to RabbitMQ: %w", err))
		}
		if n == 0 {
			r.log.Warn("RabbitMQ not reachable yet, retrying", "err", err, "for", r.cfg.ConnectTimeout)
		}
		if !sleep(ctx, r.clock, wait) {
			return exitErr(ExitUnavailable, fmt.Errorf("connect to RabbitMQ: %w", context.Cause(ctx)))
		}
	}
	conn, err := r.mq.Conn(ctx)
	if err != nil {
		return exitErr(ExitUnavailable, fmt.Errorf("connect to RabbitMQ: %w", err))
	}
	if err := conn.DeclareStage(ctx, r.cfg.Stage); err != nil {
		if errors.Is(err, rabbitmq.ErrQueueMismatch) {
			return exitErr(ExitConfig, err)
		}
		return exitErr(ExitUnavailable, err)
	}
	return nil
}

// watchStage ends the runner after its current batch when the stage's configuration changes or
// the stage is deleted.
func (r *Runner) watchStage() {
	ch, err := r.zk.WatchStage(r.hardCtx, r.cfg.Stage)
	if err != nil {
		r.log.Warn("cannot watch the stage for changes", "err", err)
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for st := range ch {
			if st.ConfigVersion != r.stage.ConfigVersion {
				r.log.Info("stage configuration changed: finishing", "config_version", st.ConfigVersion)
				r.fetchCancel(errConfigChanged)
				return
			}
		}
		if r.hardCtx.Err() == nil {
			r.log.Info("stage deleted: finishing")
			r.fetchCancel(errStageDeleted)
		}
	}()
}

// teardown closes what setup opened, in reverse order. The statistics and the status node go
// last, since they need ZooKeeper.
func (r *Runner) teardown() {
	r.hardCancel()
	r.wg.Wait()
	if r.mq != nil {
		if err := r.mq.Close(); err != nil {
			r.log.Debug("close RabbitMQ", "err", err)
		}
	}
	if r.fn != nil {
		if err := r.fn.Close(); err != nil {
			r.log.Warn("close function", "err", err)
		}
	}
	if r.model != nil {
		_ = r.model.Close()
	}
	if r.stats != nil {
		r.stats.Stop()
	}
	r.mu.Lock()
	status := r.status
	r.mu.Unlock()
	if status != nil {
		status.Stop()
	}
	if r.zk != nil {
		r.zk.Close()
	}
}

// link is one connection's publisher and consumer.
type link struct {
	pub *rabbitmq.Publisher
	src *rabbitmq.Consumer
}

func (l *link) close() {
	_ = l.src.Close()
	_ = l.pub.Close()
}

// serve consumes until an exit rule fires, reconnecting when the broker is lost.
func (r *Runner) serve() (string, error) {
	for {
		l, err := r.connect()
		if err != nil {
			if reason := r.fetchReason(); reason != "" {
				return reason, nil
			}
			return "", err
		}
		reason, err := r.consume(l)
		l.close()
		if errors.Is(err, errLinkLost) {
			r.log.Warn("lost RabbitMQ: reconnecting", "err", err, "for", r.cfg.ConnectTimeout)
			continue
		}
		return reason, err
	}
}

// connect opens a publisher and a consumer on the session's connection, waiting up to
// ConnectTimeout for one.
func (r *Runner) connect() (*link, error) {
	ctx, cancel := context.WithTimeout(r.fetchCtx, r.cfg.ConnectTimeout)
	defer cancel()
	var last error
	for n := 0; ; n++ {
		conn, err := r.mq.Conn(ctx)
		if err != nil {
			return nil, exitErr(ExitUnavailable, fmt.Errorf("RabbitMQ: %w", errors.Join(err, last)))
		}
		l, err := r.open(ctx, conn)
		if err == nil {
			return l, nil
		}
		if errors.Is(err, rabbitmq.ErrQueueNotFound) {
			return nil, exitErr(ExitConfig, fmt.Errorf("queue of stage %q: %w", r.cfg.Stage, err))
		}
		last = err
		if !sleep(ctx, r.clock, backoff(n, 100*time.Millisecond, 2*time.Second)) {
			return nil, exitErr(ExitUnavailable, fmt.Errorf("RabbitMQ: %w", err))
		}
	}
}

func (r *Runner) open(ctx context.Context, conn *rabbitmq.Conn) (*link, error) {
	pub, err := conn.NewPublisher()
	if err != nil {
		return nil, err
	}
	src, err := conn.Consume(ctx, r.cfg.Stage, r.settings.BatchSize)
	if err != nil {
		_ = pub.Close()
		return nil, err
	}
	return &link{pub: pub, src: src}, nil
}

// fetchReason is the exit reason when fetchCtx ended, "" while it runs.
func (r *Runner) fetchReason() string {
	switch context.Cause(r.fetchCtx) {
	case nil:
		return ""
	case errConfigChanged:
		return ReasonConfigChanged
	case errStageDeleted:
		return ReasonStageDeleted
	}
	return ReasonStopped
}

// consume runs batches on one link until an exit rule fires or the link is lost, then hands
// back every message it holds but has not started.
func (r *Runner) consume(l *link) (string, error) {
	dead := &deadLetters{stage: r.cfg.Stage, container: r.cfg.ContainerID, pub: l.pub, counters: &r.cnt, clock: r.clock,
		log: r.log.With("component", "deadletter")}
	cons := newConsumer(r.cfg.Stage, r.settings.MaxDeliveries, r.settings.BatchSize, l.src, l.pub, dead, r.suspects, &r.cnt, r.clock,
		r.log.With("component", "consumer"))
	r.mu.Lock()
	r.cons = cons
	status := r.status
	r.mu.Unlock()
	if r.fetchCtx.Err() != nil { // Stop came before the consumer was registered
		cons.cancel()
	}
	cons.Start(r.hardCtx)
	fw := &forwarder{stage: r.cfg.Stage, hostID: r.cfg.HostID, version: r.stage.ConfigVersion, pub: l.pub, dead: dead,
		counters: &r.cnt, log: r.log.With("component", "forwarder")}
	b := &batcher{in: cons.jobs, size: r.settings.BatchSize, wait: r.cfg.BatchWait, clock: r.clock}
	if r.fetchCtx.Err() == nil {
		status.set(func(s *Status) { s.State = StateRunning })
		r.log.Info("consuming", "queue", r.cfg.Stage, "prefetch", r.settings.BatchSize)
	}

	reason, err := r.loop(b, fw, cons)

	cons.Stop()
	n := 0
	if j := b.takeCarry(); j != nil {
		r.handBack(j)
		n++
	}
	for j := range cons.jobs {
		r.handBack(j)
		n++
	}
	if n > 0 {
		r.log.Info("handed back messages not started", "count", n)
	}
	return reason, err
}

func (r *Runner) loop(b *batcher, fw *forwarder, cons *consumer) (string, error) {
	s := r.settings
	for {
		if reason := r.fetchReason(); reason != "" {
			return reason, nil
		}
		if s.MaxBatches > 0 && r.cnt.batches.Load() >= int64(s.MaxBatches) {
			return ReasonMaxBatches, nil
		}
		left := time.Duration(s.MaxLifetime) - r.clock.Now().Sub(r.startedAt)
		if left <= 0 {
			return ReasonMaxLifetime, nil
		}
		idle := time.Duration(s.IdleTimeout)
		byLifetime := left < idle
		idle = min(idle, left)

		batch, err := b.next(r.fetchCtx, idle)
		if err != nil {
			for _, j := range batch {
				r.handBack(j)
			}
			switch {
			case errors.Is(err, errIdle) && byLifetime:
				return ReasonMaxLifetime, nil
			case errors.Is(err, errIdle):
				return ReasonIdle, nil
			case r.fetchCtx.Err() != nil:
				return r.fetchReason(), nil
			}
			switch cerr := cons.src.Err(); {
			case cerr == nil:
				return ReasonStopped, nil
			case errors.Is(cerr, rabbitmq.ErrCancelled):
				return "", exitErr(ExitConfig, fmt.Errorf("the queue of stage %q was deleted: %w", r.cfg.Stage, cerr))
			default:
				return "", fmt.Errorf("%w: %w", errLinkLost, cerr)
			}
		}
		if err := r.process(batch, fw); err != nil {
			return "", err
		}
	}
}

// process runs one batch through the function and forwards its results.
func (r *Runner) process(batch []*job, fw *forwarder) error {
	r.cnt.inFlight.Store(int64(len(batch)))
	defer r.cnt.inFlight.Store(0)
	pages := make([]function.Page, 0, len(batch))
	index := make([]int, 0, len(batch)) // page i is batch[index[i]]
	outs := make([]function.Output, len(batch))
	for i, j := range batch {
		in := message.Input(j.req)
		if len(in.GetContent()) == 0 && in.GetRef() != "" {
			outs[i] = function.Output{Err: errRefInput}
			continue
		}
		p := function.Page{Name: in.GetName(), Image: in.GetContent()}
		for _, d := range j.req.GetResults()[1:] {
			p.Inputs = append(p.Inputs, function.File{Name: d.GetName(), Content: d.GetContent()})
		}
		pages = append(pages, p)
		index = append(index, i)
	}

	// A suspect runs alone, recorded, so that its next delivery knows it was the one running
	// should the runner die now. The record stays when the function panics or hangs.
	var suspect string
	if len(batch) == 1 && batch[0].suspect() {
		suspect = batch[0].req.GetUuid()
		if err := r.suspects.begin(suspect, r.cfg.ContainerID, batch[0].req.GetAttempts()); err != nil {
			r.log.Warn("cannot record the suspect: a crash now would not be counted", "uuid", suspect, "err", err)
		}
	}
	settled := func() {
		if suspect != "" {
			if err := r.suspects.end(suspect); err != nil {
				r.log.Warn("cannot remove the suspect record", "uuid", suspect, "err", err)
			}
		}
	}

	ctx, cancel := context.WithTimeoutCause(r.workCtx, time.Duration(r.settings.BatchTimeout), errBatchTimeout)
	defer cancel()
	start := r.clock.Now()
	got, err := r.call(ctx, pages)
	end := r.clock.Now()
	switch {
	case errors.Is(err, errPanic):
		r.panics++
		r.log.Warn("batch handed back after a panic", "err", err, "batch_size", len(batch), "in_a_row", r.panics)
		for _, j := range batch {
			r.handBack(j)
		}
		if r.panics >= maxPanics {
			return exitErr(ExitFunction, fmt.Errorf("function panicked on %d batches in a row: %w", r.panics, err))
		}
		return nil
	case err != nil:
		// Hung: leave the batch unacknowledged; closing the connection returns it to the queue.
		return exitErr(ExitFunction, fmt.Errorf("%w within %s of its deadline (%v): exiting", err, hangGrace, context.Cause(ctx)))
	}
	r.panics = 0
	for i, o := range got {
		outs[index[i]] = o
	}

	results := make([]result, 0, len(batch))
	var back []*job
	shutdown := errors.Is(context.Cause(ctx), errShutdown)
	for i, j := range batch {
		o := outs[i]
		if o.Err != nil && shutdown && errors.Is(o.Err, context.Canceled) {
			back = append(back, j) // cut short by the stop, not the page's fault
			continue
		}
		if o.Err != nil && errors.Is(o.Err, context.DeadlineExceeded) && errors.Is(context.Cause(ctx), errBatchTimeout) {
			o.Err = fmt.Errorf("%w of %s: %w", errBatchTimeout, time.Duration(r.settings.BatchTimeout), o.Err)
		}
		results = append(results, result{job: j, out: o, start: start, end: end})
	}
	fw.forward(results)
	for _, j := range back {
		r.handBack(j)
	}
	settled()
	took := r.clock.Now().Sub(start)
	r.cnt.batches.Add(1)
	r.cnt.messages.Add(int64(len(results)))
	if len(results) > 0 {
		r.stats.add(len(results), took)
	}
	if r.log.Enabled(context.Background(), slog.LevelDebug) {
		failed := 0
		for _, res := range results {
			if res.out.Err != nil {
				failed++
			}
		}
		r.log.Debug("batch done", "batch_size", len(batch), "failed", failed, "handed_back", len(back),
			"process", end.Sub(start), "total", took)
	}
	return nil
}

// call runs the function, turning a panic into errPanic and a function that ignores its ended
// context into errHung.
func (r *Runner) call(ctx context.Context, pages []function.Page) ([]function.Output, error) {
	if len(pages) == 0 {
		return nil, nil
	}
	type ret struct {
		outs []function.Output
		err  error
	}
	ch := make(chan ret, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				r.log.Error("function panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				ch <- ret{err: fmt.Errorf("%w: %v", errPanic, p)}
			}
		}()
		ch <- ret{outs: r.fn.Process(ctx, pages)}
	}()
	var x ret
	select {
	case x = <-ch:
	case <-ctx.Done():
		t := r.clock.NewTimer(hangGrace)
		defer t.Stop()
		select {
		case x = <-ch:
		case <-t.C():
			return nil, errHung
		}
	}
	if x.err != nil {
		return nil, x.err
	}
	if len(x.outs) != len(pages) {
		err := fmt.Errorf("function returned %d outputs for %d pages", len(x.outs), len(pages))
		outs := make([]function.Output, len(pages))
		for i := range outs {
			outs[i].Err = err
		}
		return outs, nil
	}
	return x.outs, nil
}

// handBack returns a message to the queue unprocessed.
func (r *Runner) handBack(j *job) {
	r.cnt.handedBack.Add(1)
	if err := j.ack.Nack(true); err != nil {
		r.log.Debug("hand back", "err", err)
	}
}
