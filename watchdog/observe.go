package watchdog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/pero-worker/pero-worker/internal/rabbitmq"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
	"github.com/pero-worker/pero-worker/runner"
)

// StageSource reads the stages' configuration and measured speed (a *zookeeper.Store).
type StageSource interface {
	ListStages(ctx context.Context) ([]string, error)
	GetStage(ctx context.Context, name string) (zookeeper.Stage, error)
	SecondsPerMessage(ctx context.Context, stage string) (float64, error)
}

var _ StageSource = (*zookeeper.Store)(nil)

// QueueCounts is what the broker says of a stage's queue.
type QueueCounts struct {
	// Ready counts the messages waiting for a consumer.
	Ready int
	// Unacked counts the messages delivered and not yet acknowledged; -1 when unknown.
	Unacked int
	// Consumers counts the queue's consumers.
	Consumers int
	// Missing is true when the queue does not exist (yet).
	Missing bool
}

// QueueSource reads the queues of the stages. A queue it could not read is absent from the map
// and named in the error; the watchdog launches nothing for it.
type QueueSource interface {
	Counts(ctx context.Context, queues []string) (map[string]QueueCounts, error)
}

// RunnerSource reads the status nodes the runners of a stage keep.
type RunnerSource interface {
	Runners(ctx context.Context, stage string) ([]runner.Status, error)
}

// StatusSink publishes the watchdog's view for `pero status`.
type StatusSink interface {
	Publish(ctx context.Context, data []byte) error
	Clear(ctx context.Context) error
}

// Runner states (runner.StateStarting and the others) as the watchdog counts them.
const (
	stateStarting = runner.StateStarting
	stateRunning  = runner.StateRunning
	stateDraining = runner.StateDraining
)

// observation is one poll's view of the world.
type observation struct {
	at         time.Time
	stageNames []string                   // all stages, sorted; nil when the list failed
	stages     map[string]zookeeper.Stage // the stages that could be read
	spm        map[string]float64
	queues     map[string]QueueCounts
	runners    map[string]map[string]runner.Status // stage -> container name -> status
	containers []Container
	// containersOK is false when the backend could not list: nothing is launched then.
	containersOK bool
	stagesOK     bool
}

// observe reads every source; failures are logged and counted, and leave holes the decision
// respects (no launch for what could not be seen).
func (w *Watchdog) observe(ctx context.Context) observation {
	obs := observation{at: w.now()}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the backend is the slowest source; read it alongside ZooKeeper and the broker
		defer wg.Done()
		ctx, cancel := context.WithTimeout(ctx, observeTimeout)
		defer cancel()
		list, err := w.deps.Backend.List(ctx)
		if err != nil {
			w.sourceFailed("backend", err)
			return
		}
		w.sourceOK("backend")
		obs.containers, obs.containersOK = list, true
	}()
	w.observeConfig(ctx, &obs)
	wg.Wait()
	return obs
}

// observeTimeout bounds the reading of the backend and of the broker in one poll, so that a source
// that hangs (a broker reconnecting) delays the poll, not stops it.
const observeTimeout = 10 * time.Second

// observeConfig reads the stages from ZooKeeper and their queues from the broker.
func (w *Watchdog) observeConfig(ctx context.Context, obs *observation) {
	names, err := w.deps.Stages.ListStages(ctx)
	if err != nil {
		w.sourceFailed("zookeeper", err)
		return
	}
	obs.stageNames, obs.stagesOK = names, true
	obs.stages = make(map[string]zookeeper.Stage, len(names))
	obs.spm = make(map[string]float64, len(names))
	obs.runners = make(map[string]map[string]runner.Status, len(names))
	var zkErr error
	for _, name := range names {
		st, err := w.deps.Stages.GetStage(ctx, name)
		if err != nil {
			if !errors.Is(err, zookeeper.ErrNotFound) { // deleted meanwhile: not a failure
				zkErr = errors.Join(zkErr, err)
			}
			continue
		}
		obs.stages[name] = st
		if st.Settings.Output {
			continue
		}
		obs.spm[name] = w.secondsPerMessage(ctx, name, obs.at)
		rs, err := w.deps.Runners.Runners(ctx, name)
		if err != nil {
			zkErr = errors.Join(zkErr, fmt.Errorf("runners of stage %q: %w", name, err))
		}
		m := make(map[string]runner.Status, len(rs))
		for _, r := range rs {
			m[r.Container] = r
		}
		obs.runners[name] = m
	}
	if zkErr != nil {
		w.sourceFailed("zookeeper", zkErr)
	} else {
		w.sourceOK("zookeeper")
	}

	var queues []string
	for _, name := range names {
		if st, ok := obs.stages[name]; ok && !st.Settings.Output {
			queues = append(queues, name)
		}
	}
	qctx, cancel := context.WithTimeout(ctx, observeTimeout)
	defer cancel()
	obs.queues, err = w.deps.Queues.Counts(qctx, queues)
	if err != nil {
		w.sourceFailed("broker", err)
	} else {
		w.sourceOK("broker")
	}
}

// secondsPerMessage reads the stage's measured speed at most every spmRefresh: it changes
// slowly and reading it costs one ZooKeeper read per runner that ever served the stage.
func (w *Watchdog) secondsPerMessage(ctx context.Context, stage string, now time.Time) float64 {
	c, ok := w.spmCache[stage]
	if ok && now.Sub(c.at) < spmRefresh {
		return c.v
	}
	v, err := w.deps.Stages.SecondsPerMessage(ctx, stage)
	if err != nil {
		w.log.Debug("seconds per message", "stage", stage, "err", err)
		return c.v // the last known value, or 0: the policy's default
	}
	w.spmCache[stage] = cachedFloat{v: v, at: now}
	return v
}

const spmRefresh = 10 * time.Second

type cachedFloat struct {
	v  float64
	at time.Time
}

// sourceFailed logs a source's failure at most once per errorLogEvery, and its recovery once.
func (w *Watchdog) sourceFailed(source string, err error) {
	w.metrics.observeErrs.WithLabelValues(source).Inc()
	w.errMu.Lock()
	defer w.errMu.Unlock()
	st := w.sourceErrs[source]
	st.failures++
	if st.failures == 1 || w.now().Sub(st.logged) >= errorLogEvery {
		w.log.Warn("cannot read "+source, "err", err, "failures", st.failures)
		st.logged = w.now()
	}
	w.sourceErrs[source] = st
}

func (w *Watchdog) sourceOK(source string) {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	if st := w.sourceErrs[source]; st.failures > 0 {
		w.log.Info(source+" readable again", "after_failures", st.failures)
		delete(w.sourceErrs, source)
	}
}

const errorLogEvery = 30 * time.Second

type sourceErr struct {
	failures int
	logged   time.Time
}

// BrokerQueues reads queue counts from RabbitMQ: ready messages and consumers by a passive
// declare on the AMQP connection (current to the instant), unacknowledged messages from the
// management API when one is configured (which lags by its statistics interval, 5 s by default).
type BrokerQueues struct {
	// Session is the AMQP connection. Required.
	Session *rabbitmq.Session
	// Management, when not nil, gives the unacknowledged counts.
	Management *rabbitmq.Management
}

var _ QueueSource = (*BrokerQueues)(nil)

// Counts implements QueueSource.
func (b *BrokerQueues) Counts(ctx context.Context, queues []string) (map[string]QueueCounts, error) {
	out := make(map[string]QueueCounts, len(queues))
	if len(queues) == 0 {
		return out, nil
	}
	unacked := map[string]int{}
	var errs []error
	if b.Management != nil {
		list, err := b.Management.ListQueues(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("unacknowledged counts: %w", err))
			unacked = nil
		}
		for _, q := range list {
			unacked[q.Name] = q.Unacked
		}
	}
	conn, err := b.Session.Conn(ctx)
	if err != nil {
		return out, fmt.Errorf("broker: %w", err)
	}
	for _, q := range queues {
		info, err := conn.Inspect(ctx, q)
		switch {
		case errors.Is(err, rabbitmq.ErrQueueNotFound):
			out[q] = QueueCounts{Unacked: 0, Missing: true}
			continue
		case err != nil:
			errs = append(errs, err)
			continue
		}
		c := QueueCounts{Ready: info.Ready, Consumers: info.Consumers, Unacked: -1}
		if n, ok := unacked[q]; ok {
			c.Unacked = n
		}
		out[q] = c
	}
	return out, errors.Join(errs...)
}

// ZKRunners reads the runners' ephemeral status nodes, <root>/queue/<stage>/runners/<container>.
type ZKRunners struct {
	Conn *zk.Conn
	Root string
}

var _ RunnerSource = (*ZKRunners)(nil)

// Runners implements RunnerSource.
func (z *ZKRunners) Runners(ctx context.Context, stage string) ([]runner.Status, error) {
	dir := runner.RunnersPath(z.Root, stage)
	kids, err := zookeeper.Call(ctx, func() ([]string, error) {
		k, _, err := z.Conn.Children(dir)
		return k, err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]runner.Status, 0, len(kids))
	for _, k := range kids {
		data, err := zookeeper.Call(ctx, func() ([]byte, error) {
			d, _, err := z.Conn.Get(dir + "/" + k)
			return d, err
		})
		if errors.Is(err, zk.ErrNoNode) {
			continue // the runner ended meanwhile
		}
		if err != nil {
			return out, err
		}
		var st runner.Status
		if err := json.Unmarshal(data, &st); err != nil {
			continue // not a status this version knows; the container counts as starting
		}
		st.Container = k
		out = append(out, st)
	}
	return out, nil
}

// ZKStatus publishes the watchdog's status in an ephemeral node (status.Path).
type ZKStatus struct {
	Conn *zk.Conn
	ACL  []zk.ACL
	Path string
}

var _ StatusSink = (*ZKStatus)(nil)

// Publish writes data, creating the node (and its parents) when it is missing, as after a session
// expiry.
func (z *ZKStatus) Publish(ctx context.Context, data []byte) error {
	_, err := zookeeper.Call(ctx, func() (struct{}, error) {
		_, err := z.Conn.Set(z.Path, data, -1)
		if !errors.Is(err, zk.ErrNoNode) {
			return struct{}{}, err
		}
		_, err = z.Conn.Create(z.Path, data, zk.FlagEphemeral, z.acl())
		if errors.Is(err, zk.ErrNoNode) {
			parent := path.Dir(z.Path)
			for i := 1; i <= len(parent); i++ {
				if i < len(parent) && parent[i] != '/' {
					continue
				}
				if _, err := z.Conn.Create(parent[:i], nil, 0, z.acl()); err != nil && !errors.Is(err, zk.ErrNodeExists) {
					return struct{}{}, err
				}
			}
			_, err = z.Conn.Create(z.Path, data, zk.FlagEphemeral, z.acl())
		}
		return struct{}{}, err
	})
	return err
}

// Clear deletes the node, as a watchdog that stops leading does.
func (z *ZKStatus) Clear(ctx context.Context) error {
	_, err := zookeeper.Call(ctx, func() (struct{}, error) {
		err := z.Conn.Delete(z.Path, -1)
		if errors.Is(err, zk.ErrNoNode) {
			err = nil
		}
		return struct{}{}, err
	})
	return err
}

func (z *ZKStatus) acl() []zk.ACL {
	if len(z.ACL) == 0 {
		return zk.WorldACL(zk.PermAll)
	}
	return z.ACL
}
