package watchdog

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"math"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/pero-worker/pero-worker/internal/zookeeper"
	"github.com/pero-worker/pero-worker/watchdog/status"
)

// Held reasons of stages that cannot be launched at all.
const (
	blockedOutput     = "output_stage"
	blockedNoImage    = "no_image"
	blockedImage      = "image_not_allowed"
	blockedQueue      = "queue_unreadable"
	blockedContainers = "containers_unlisted"
)

// plan turns an observation into Decide's input and runs it.
func (w *Watchdog) plan(obs observation) (Plan, []StageView) {
	type tally struct{ starting, running, draining, inFlight int }
	counts := map[string]*tally{}
	gpuUse := map[string]int{}
	alive := map[string][]Container{}
	for _, c := range obs.containers {
		if c.State == Exited {
			continue
		}
		t := counts[c.Stage]
		if t == nil {
			t = &tally{}
			counts[c.Stage] = t
		}
		alive[c.Stage] = append(alive[c.Stage], c)
		for _, g := range c.GPUs {
			gpuUse[g]++
		}
		rs, ok := obs.runners[c.Stage][c.Name]
		switch {
		case c.State == Pending || !ok:
			t.starting++
		case rs.State == stateRunning:
			t.running++
			t.inFlight += int(rs.InFlight)
		case rs.State == stateDraining:
			t.draining++
			t.inFlight += int(rs.InFlight)
		default:
			t.starting++
		}
	}

	elsewhere := 0
	for stage, t := range counts {
		if _, ok := obs.stages[stage]; !ok {
			elsewhere += t.starting + t.running + t.draining
		}
	}
	if obs.stagesOK {
		for name := range w.stages {
			if _, ok := obs.stages[name]; !ok && counts[name] == nil {
				delete(w.stages, name)
				delete(w.spmCache, name)
				w.metrics.forget(name)
			}
		}
	}

	var views []StageView
	for _, name := range obs.stageNames {
		st, ok := obs.stages[name]
		if !ok {
			continue
		}
		ss := w.state(name)
		if ss.configVersion != st.ConfigVersion {
			if ss.health.Failures > 0 {
				w.log.Info("stage configuration changed: its failures are forgiven", "stage", name,
					"config_version", st.ConfigVersion)
			}
			ss.health, ss.configVersion = Health{}, st.ConfigVersion
		}
		for _, c := range alive[name] {
			// Only a runner that consumes proves the stage healthy; one stuck starting does not.
			if rs, ok := obs.runners[name][c.Name]; ok && c.State == Up && rs.State == stateRunning {
				ss.health = w.cfg.Backoff.AfterAlive(ss.health, c.Created, obs.at)
			}
		}
		s := st.Settings
		t := counts[name]
		if t == nil {
			t = &tally{}
		}
		v := StageView{
			Name:              name,
			Priority:          st.AdministrativePriority,
			SecondsPerMessage: obs.spm[name],
			BatchSize:         s.BatchSize,
			Min:               s.MinContainers,
			Max:               s.MaxContainers,
			CPUSlots:          max(1, int(math.Ceil(s.CPUs))),
			GPUs:              s.GPUs,
			Starting:          t.starting,
			Running:           t.running,
			Draining:          t.draining,
			WaitingSince:      ss.waitingSince,
			Failures:          ss.health.Failures,
			BackoffUntil:      ss.health.Until,
		}
		q, qok := obs.queues[name]
		if qok {
			v.Ready = q.Ready
			switch {
			case q.Unacked >= 0 && q.Consumers > 0:
				// Unacknowledged messages need a consumer; without one the management API's
				// figure is stale (it lags by seconds).
				v.Unacked = q.Unacked
			case q.Unacked < 0:
				v.Unacked = t.inFlight
			}
		}
		image := cmp.Or(s.Image, w.cfg.DefaultImage)
		switch {
		case s.Output:
			v.Blocked = blockedOutput
		case image == "":
			v.Blocked = blockedNoImage
		case !allowedImage(image, w.cfg.DefaultImage, w.cfg.AllowedImages):
			v.Blocked = blockedImage
		case !qok:
			v.Blocked = blockedQueue
		case !obs.containersOK:
			v.Blocked = blockedContainers
		}
		views = append(views, v)
	}

	gpus := make([]GPU, len(w.cfg.GPUs))
	for i, id := range w.cfg.GPUs {
		gpus[i] = GPU{ID: id, Used: gpuUse[id]}
	}
	plan := Decide(Input{
		Now:    obs.at,
		Stages: views,
		Capacity: Capacity{
			CPUSlots:      w.cfg.CPUSlots,
			GPUs:          gpus,
			GPUShare:      w.cfg.GPUShare,
			UsedElsewhere: elsewhere,
		},
		Policy: w.cfg.Policy,
	})
	for _, sp := range plan.Stages {
		ss := w.state(sp.Stage)
		switch {
		case sp.Waiting && ss.waitingSince.IsZero():
			ss.waitingSince = obs.at
		case !sp.Waiting:
			ss.waitingSince = time.Time{}
		}
	}
	return plan, views
}

func (w *Watchdog) state(stage string) *stageState {
	ss := w.stages[stage]
	if ss == nil {
		ss = &stageState{}
		w.stages[stage] = ss
	}
	return ss
}

// launch starts the plan's containers, a few at a time, in the plan's order, and returns how many
// it started per stage. It starts no new launch once ctx has ended; those under way finish on work.
func (w *Watchdog) launch(ctx, work context.Context, plan Plan, obs observation) map[string]int {
	sem := make(chan struct{}, w.cfg.LaunchConcurrency)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		launched = map[string]int{}
	)
	for _, l := range plan.Launches {
		select {
		case <-ctx.Done():
		case sem <- struct{}{}:
		}
		if ctx.Err() != nil {
			break
		}
		spec := w.spec(obs.stages[l.Stage], l.GPUs)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			start := w.now()
			c, err := w.deps.Backend.Launch(work, spec)
			took := w.now().Sub(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				w.metrics.launchErrs.WithLabelValues(l.Stage).Inc()
				ss := w.state(l.Stage)
				before := ss.health.Failures
				ss.health = w.cfg.Backoff.AfterExit(ss.health, Exit{Code: -1, Created: start, Finished: w.now()}, w.now(), mrand.Float64())
				w.log.Warn("launch failed", "stage", l.Stage, "image", spec.Image, "err", err,
					"failures", ss.health.Failures)
				if ss.health.Failures != before {
					w.log.Warn("stage backing off", "stage", l.Stage, "until", ss.health.Until.Format(time.RFC3339Nano),
						"failures", ss.health.Failures)
				}
				return
			}
			launched[l.Stage]++
			w.metrics.launched.WithLabelValues(l.Stage).Inc()
			w.log.Info("launched", "stage", l.Stage, "container", c.Name, "image", spec.Image, "gpus", spec.GPUs,
				"took", took.Round(time.Millisecond))
		}()
	}
	wg.Wait()
	return launched
}

// spec builds the container of stage st.
func (w *Watchdog) spec(st zookeeper.Stage, gpus []string) Spec {
	rc := w.cfg.Runner
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := containerName(st.Name, hex.EncodeToString(b[:]))
	env := slices.Clone(rc.Env)
	env = append(env, "PERO_STAGE="+st.Name, "PERO_CONTAINER_ID="+name)
	mounts := slices.Clone(rc.Mounts)
	// The root filesystem is read-only: without a cache volume the container gets an anonymous
	// one, removed with it.
	mounts = append(mounts, Mount{Volume: rc.CacheVolume, Target: rc.CacheDir})
	env = append(env, "PERO_CACHE_DIR="+rc.CacheDir)
	return Spec{
		Name:        name,
		Image:       cmp.Or(st.Settings.Image, w.cfg.DefaultImage),
		Env:         env,
		Labels:      Labels("", st.Name, st.ConfigVersion, w.cfg.ID, gpus, w.now()),
		NanoCPUs:    int64(st.Settings.CPUs * 1e9),
		MemoryBytes: int64(st.Settings.MemoryMB) << 20,
		PidsLimit:   rc.PidsLimit,
		GPUs:        gpus,
		StopTimeout: rc.StopTimeout,
		Network:     rc.Network,
		Mounts:      mounts,
	}
}

// reap records how the exited containers ended, then removes them; it also removes containers
// left created but never started.
func (w *Watchdog) reap(ctx context.Context, obs observation) {
	listed := make(map[string]bool, len(obs.containers))
	for _, c := range obs.containers {
		listed[c.ID] = true
		switch {
		case c.State == Pending && obs.at.Sub(c.Created) > w.cfg.StalePending:
			w.log.Warn("removing a container that never started", "stage", c.Stage, "container", c.Name,
				"created", c.Created.Format(time.RFC3339))
		case c.State != Exited:
			continue
		default:
			if _, done := w.reaped[c.ID]; !done {
				w.record(ctx, c, obs.at)
				w.reaped[c.ID] = obs.at
			}
		}
		if err := w.deps.Backend.Remove(ctx, c.ID); err != nil {
			w.sourceFailed("backend", err)
		}
	}
	for id := range w.reaped {
		if !listed[id] {
			delete(w.reaped, id)
		}
	}
}

// record books one exited container: metrics, the stage's health and, for a failure, a log line
// with its last output.
func (w *Watchdog) record(ctx context.Context, c Container, now time.Time) {
	finished := c.Finished
	if finished.IsZero() {
		finished = now
	}
	e := Exit{Code: c.ExitCode, Created: c.Created, Finished: finished}
	reason := ExitReason(c.ExitCode)
	if c.ExitCode < 0 {
		reason = "rejected"
	}
	w.metrics.exited.WithLabelValues(c.Stage, reason).Inc()
	ss := w.state(c.Stage)
	before := ss.health.Failures
	ss.health = w.cfg.Backoff.AfterExit(ss.health, e, now, mrand.Float64())
	attrs := []any{"stage", c.Stage, "container", c.Name, "exit_code", c.ExitCode, "reason", reason,
		"ran", finished.Sub(c.Created).Round(time.Millisecond)}
	if c.Error != "" {
		attrs = append(attrs, "error", c.Error)
	}
	if c.ExitCode == 0 {
		w.log.Info("container finished", attrs...)
		return
	}
	if w.cfg.Backoff.Failed(e) {
		w.metrics.failed.WithLabelValues(c.Stage, reason).Inc()
	}
	logs, err := w.deps.Backend.Logs(ctx, c.ID, w.cfg.LogLines)
	if err != nil {
		logs = "(logs unavailable: " + err.Error() + ")"
	}
	attrs = append(attrs, "last_lines", logs, "failures", ss.health.Failures)
	w.log.Warn("container failed", attrs...)
	if ss.health.Failures != before && ss.health.Failures > 0 {
		w.log.Warn("stage backing off", "stage", c.Stage, "until", ss.health.Until.Format(time.RFC3339Nano),
			"failures", ss.health.Failures, "exit_code", c.ExitCode)
	}
}

// report updates the metrics, the reaction clocks and the published status.
func (w *Watchdog) report(ctx context.Context, obs observation, plan Plan, views []StageView) {
	st := status.Status{
		Watchdog:     w.cfg.ID,
		Backend:      w.cfg.Backend,
		CPUSlots:     w.cfg.CPUSlots,
		CPUSlotsUsed: plan.CPUSlotsUsed,
		GPUs:         len(w.cfg.GPUs),
	}
	held := map[string]bool{}
	for _, c := range obs.containers {
		if c.State != Exited {
			for _, g := range c.GPUs {
				if slices.Contains(w.cfg.GPUs, g) {
					held[g] = true
				}
			}
		}
	}
	st.GPUsUsed = len(held)
	w.metrics.slotsUsed.Set(float64(plan.CPUSlotsUsed))
	w.metrics.gpusUsed.Set(float64(st.GPUsUsed))
	for i, v := range views {
		sp := plan.Stages[i]
		ss := w.state(v.Name)
		m := w.metrics
		m.backlog.WithLabelValues(v.Name).Set(float64(sp.Backlog))
		m.desired.WithLabelValues(v.Name).Set(float64(sp.Desired))
		m.containers.WithLabelValues(v.Name, stateStarting).Set(float64(v.Starting))
		m.containers.WithLabelValues(v.Name, stateRunning).Set(float64(v.Running))
		m.containers.WithLabelValues(v.Name, stateDraining).Set(float64(v.Draining))
		m.backoff.WithLabelValues(v.Name).Set(max(ss.health.Until.Sub(obs.at).Seconds(), 0))

		switch {
		case v.Running > 0 && !ss.unservedSince.IsZero():
			d := obs.at.Sub(ss.unservedSince)
			m.reaction.WithLabelValues(v.Name).Observe(d.Seconds())
			w.log.Info("stage consuming", "stage", v.Name, "reaction", d.Round(time.Millisecond))
			ss.unservedSince = time.Time{}
		case v.Running == 0 && sp.Backlog > 0 && v.Blocked == "" && ss.unservedSince.IsZero():
			ss.unservedSince = obs.at
		case sp.Backlog == 0 && v.Running == 0:
			ss.unservedSince = time.Time{}
		}

		s := status.Stage{
			Name: v.Name, Starting: v.Starting, Running: v.Running, Draining: v.Draining,
			Desired: sp.Desired, Backlog: sp.Backlog, Held: sp.Held, Failures: ss.health.Failures,
		}
		if obs.at.Before(ss.health.Until) {
			s.BackoffUntil = ss.health.Until.UTC()
		}
		st.Stages = append(st.Stages, s)
	}
	if w.deps.Status == nil || !obs.stagesOK {
		return
	}
	data, err := json.Marshal(st)
	if err != nil {
		return
	}
	if bytes.Equal(data, w.lastStatus) && obs.at.Sub(w.lastPublish) < statusRefresh {
		return
	}
	st.Updated = obs.at.UTC()
	full, _ := json.Marshal(st)
	if err := w.deps.Status.Publish(ctx, full); err != nil {
		w.sourceFailed("status", err)
		return
	}
	w.lastStatus, w.lastPublish = data, obs.at
}

// statusRefresh bounds how stale the published status's Updated time may get.
const statusRefresh = 10 * time.Second
