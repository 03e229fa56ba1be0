package watchdog

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"
)

// StageView is what Decide knows of one stage at one instant.
type StageView struct {
	// Name is the stage and its queue.
	Name string
	// Blocked, when not empty, says why no container may be launched for the stage (an output
	// stage, an image the configuration does not allow, a queue that could not be read). Its
	// containers still count against the capacity.
	Blocked string
	// Priority is the administrative priority; higher goes first.
	Priority uint64
	// SecondsPerMessage is the measured processing time of one message; 0 means not measured,
	// and Policy.DefaultSecondsPerMessage applies.
	SecondsPerMessage float64
	// BatchSize is how many messages one runner takes at once; values below 1 count as 1.
	BatchSize int
	// Min and Max bound the stage's containers; Max below 1 counts as 1.
	Min, Max int
	// CPUSlots is how many of the global CPU slots one container takes; values below 1 count as 1.
	CPUSlots int
	// GPUs is how many GPUs one container gets; 0 means none.
	GPUs int

	// Ready and Unacked are the queue's messages waiting and delivered but not yet acknowledged.
	Ready, Unacked int
	// Starting counts containers launched that do not consume yet; Running those that do;
	// Draining those that announced they are about to exit and take no new work.
	Starting, Running, Draining int

	// WaitingSince is when the stage last started waiting for capacity; zero means not waiting.
	WaitingSince time.Time
	// Failures counts the stage's consecutive quick failures (see Health); while it is above zero
	// the stage runs one probe container at a time.
	Failures int
	// BackoffUntil: no launch for the stage before this instant.
	BackoffUntil time.Time
}

// GPU is one device of the per-GPU ledger: its ID as the engine names it and how many containers
// hold it now.
type GPU struct {
	ID   string
	Used int
}

// Capacity is what the host (or swarm) offers to all stages together.
type Capacity struct {
	// CPUSlots is the number of CPU slots; 0 means unlimited.
	CPUSlots int
	// GPUs is the ledger of the devices the watchdog may hand out, with their current use.
	GPUs []GPU
	// GPUShare is how many containers may hold one GPU at once. Default 1: a GPU is never shared.
	GPUShare int
	// UsedElsewhere counts CPU slots taken by containers of stages absent from the input (a stage
	// deleted while its containers still run).
	UsedElsewhere int
}

// Policy are the tunables of Decide. Zero fields take the defaults named on them.
type Policy struct {
	// TargetDrain is how long the backlog should take to process: a stage wants
	// backlog x seconds per message / TargetDrain containers. Default 30s.
	TargetDrain time.Duration
	// DefaultSecondsPerMessage applies to stages not measured yet. Default 1s, as the original.
	DefaultSecondsPerMessage float64
	// AgingInterval: a stage waiting for capacity gains one priority point per interval waited, so
	// that a stage of low priority is not starved. Default 10s.
	AgingInterval time.Duration
}

// Defaults of Policy.
const (
	DefaultTargetDrain       = 30 * time.Second
	DefaultSecondsPerMessage = 1.0
	DefaultAgingInterval     = 10 * time.Second
)

func (p Policy) withDefaults() Policy {
	p.TargetDrain = cmp.Or(p.TargetDrain, DefaultTargetDrain)
	p.DefaultSecondsPerMessage = cmp.Or(p.DefaultSecondsPerMessage, DefaultSecondsPerMessage)
	p.AgingInterval = cmp.Or(p.AgingInterval, DefaultAgingInterval)
	return p
}

// Input is everything Decide needs.
type Input struct {
	Now      time.Time
	Stages   []StageView
	Capacity Capacity
	Policy   Policy
}

// Launch is one container to start: its stage and the GPU devices it gets.
type Launch struct {
	Stage string
	GPUs  []string
}

// Why a stage got fewer launches than it wanted.
const (
	HeldMax      = "max_containers"
	HeldBackoff  = "backoff"
	HeldProbe    = "probe" // failing stage: one container at a time
	HeldCapacity = "cpu_slots"
	HeldGPUs     = "gpus"
)

// StagePlan is the decision for one stage.
type StagePlan struct {
	Stage string
	// Backlog is ready plus unacknowledged messages.
	Backlog int
	// Desired is how many containers should hold work (starting or running), within min..max.
	Desired int
	// Active counts the containers starting or running; Alive adds the draining ones.
	Active, Alive int
	// Launch is how many containers to start now.
	Launch int
	// Priority is the administrative priority plus the aging boost.
	Priority uint64
	// Waiting is true when the stage wanted containers and got none for lack of capacity; the
	// caller keeps StageView.WaitingSince set while it stays true.
	Waiting bool
	// Held names why the stage got fewer launches than Desired-Active ("" when it got them all or
	// wanted none); Blocked stages carry their reason.
	Held string
}

// Plan is the output of Decide.
type Plan struct {
	// Stages are in the order of the input.
	Stages []StagePlan
	// Launches are in the order they should happen (by priority).
	Launches []Launch
	// CPUSlotsUsed counts the slots taken after the launches; CPUSlotsFree is -1 when unlimited.
	CPUSlotsUsed, CPUSlotsFree int
}

// Decide computes the containers to launch. It is a pure function of its input.
//
// Each stage wants enough containers to process its backlog (ready + unacknowledged) within
// Policy.TargetDrain at its measured time per message, at least one while there is a backlog, no
// more than one per batch of the backlog, and within its min and max. Containers starting or
// running already count: a backlog that containers are about to take (starting) or hold
// (unacknowledged) never gets a second container. Decide never asks to stop a container: a stage
// that wants fewer lets its runners exit when their queue stays empty.
//
// The stages that want containers share the CPU slots and GPUs one container at a time, in order
// of priority (administrative priority plus one point per Policy.AgingInterval spent waiting for
// capacity), then fewest containers, then most work per container, then name. When the first in
// that order does not fit the free CPU slots, allocation stops there rather than let stages of
// lower priority take the slots it waits for; a stage lacking GPUs only skips itself.
func Decide(in Input) Plan {
	pol := in.Policy.withDefaults()
	share := max(in.Capacity.GPUShare, 1)
	gpus := slices.Clone(in.Capacity.GPUs)

	plan := Plan{Stages: make([]StagePlan, len(in.Stages))}
	want := make([]int, len(in.Stages))
	used := max(in.Capacity.UsedElsewhere, 0)
	for i, s := range in.Stages {
		sp := plan.Stages[i]
		sp.Stage = s.Name
		sp.Backlog = max(s.Ready, 0) + max(s.Unacked, 0)
		sp.Active = max(s.Starting, 0) + max(s.Running, 0)
		sp.Alive = sp.Active + max(s.Draining, 0)
		sp.Priority = s.Priority
		if !s.WaitingSince.IsZero() && in.Now.After(s.WaitingSince) {
			boost := uint64(in.Now.Sub(s.WaitingSince) / pol.AgingInterval)
			sp.Priority = satAdd(s.Priority, boost)
		}
		used += sp.Alive * slotsOf(s)
		if s.Blocked != "" {
			sp.Held = s.Blocked
			plan.Stages[i] = sp
			continue
		}
		var capped bool
		sp.Desired, capped = desired(s, sp.Backlog, pol)
		if capped {
			sp.Held = HeldMax
		}
		w := max(sp.Desired-sp.Active, 0)
		if room := maxOf(s) - sp.Alive; w > room {
			w = max(room, 0)
			sp.Held = HeldMax
		}
		switch {
		case w == 0:
		case in.Now.Before(s.BackoffUntil):
			w, sp.Held = 0, HeldBackoff
		case s.Failures > 0 && (sp.Active > 0 || w > 1):
			if sp.Active > 0 {
				w = 0
			} else {
				w = 1
			}
			sp.Held = HeldProbe
		}
		want[i] = w
		plan.Stages[i] = sp
	}

	free := -1
	if in.Capacity.CPUSlots > 0 {
		free = max(in.Capacity.CPUSlots-used, 0)
	}
	order := make([]int, 0, len(in.Stages))
	for i := range in.Stages {
		if want[i] > 0 {
			order = append(order, i)
		}
	}
	got := make([]int, len(in.Stages))
	for len(order) > 0 {
		// Re-rank after every launch: the fewest-containers rule spreads stages of equal priority.
		slices.SortStableFunc(order, func(a, b int) int {
			return compareCandidates(in.Stages[a], plan.Stages[a], got[a], in.Stages[b], plan.Stages[b], got[b], pol)
		})
		i := order[0]
		s := in.Stages[i]
		slots := slotsOf(s)
		if free >= 0 && slots > free {
			for _, j := range order {
				plan.Stages[j].Held = HeldCapacity
			}
			break
		}
		devs, ok := pickGPUs(gpus, s.GPUs, share)
		if !ok {
			plan.Stages[i].Held = HeldGPUs
			order = order[1:]
			continue
		}
		if free >= 0 {
			free -= slots
		}
		used += slots
		got[i]++
		plan.Launches = append(plan.Launches, Launch{Stage: s.Name, GPUs: devs})
		if got[i] == want[i] {
			order = order[1:]
		}
	}
	for i := range plan.Stages {
		sp := &plan.Stages[i]
		sp.Launch = got[i]
		if want[i] > 0 && got[i] == 0 && (sp.Held == HeldCapacity || sp.Held == HeldGPUs) {
			sp.Waiting = true
		}
		if want[i] > 0 && got[i] == want[i] && sp.Held != HeldMax && sp.Held != HeldProbe {
			sp.Held = ""
		}
	}
	plan.CPUSlotsUsed = used
	plan.CPUSlotsFree = free
	return plan
}

// desired is the number of containers the stage should have working on its backlog, and whether
// its max cut that number down.
func desired(s StageView, backlog int, pol Policy) (int, bool) {
	lo, hi := max(s.Min, 0), maxOf(s)
	if backlog == 0 {
		return min(lo, hi), false
	}
	spm := s.SecondsPerMessage
	if spm <= 0 || math.IsNaN(spm) || math.IsInf(spm, 0) {
		spm = pol.DefaultSecondsPerMessage
	}
	byTime := math.Ceil(float64(backlog) * spm / pol.TargetDrain.Seconds())
	batch := max(s.BatchSize, 1)
	byBatches := (backlog + batch - 1) / batch
	n := byBatches
	if byTime < float64(n) {
		n = int(byTime)
	}
	n = max(n, 1, lo)
	return min(n, hi), n > hi
}

func maxOf(s StageView) int   { return max(s.Max, 1) }
func slotsOf(s StageView) int { return max(s.CPUSlots, 1) }

// compareCandidates orders two stages for the next container: higher priority, then fewer
// containers (counting those granted in this round), then more seconds of work per container,
// then name.
func compareCandidates(a StageView, ap StagePlan, agot int, b StageView, bp StagePlan, bgot int, pol Policy) int {
	if c := cmp.Compare(bp.Priority, ap.Priority); c != 0 {
		return c
	}
	if c := cmp.Compare(ap.Alive+agot, bp.Alive+bgot); c != 0 {
		return c
	}
	work := func(s StageView, p StagePlan, got int) float64 {
		spm := s.SecondsPerMessage
		if spm <= 0 {
			spm = pol.DefaultSecondsPerMessage
		}
		return float64(p.Backlog) * spm / float64(p.Active+got+1)
	}
	if c := cmp.Compare(work(b, bp, bgot), work(a, ap, agot)); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// pickGPUs takes n distinct devices with a free share, least used first, then by ID, and records
// them as used in gpus. It takes nothing when n devices are not available.
func pickGPUs(gpus []GPU, n, share int) ([]string, bool) {
	if n <= 0 {
		return nil, true
	}
	idx := make([]int, 0, len(gpus))
	for i, g := range gpus {
		if g.Used < share {
			idx = append(idx, i)
		}
	}
	if len(idx) < n {
		return nil, false
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		if c := cmp.Compare(gpus[a].Used, gpus[b].Used); c != 0 {
			return c
		}
		return strings.Compare(gpus[a].ID, gpus[b].ID)
	})
	ids := make([]string, n)
	for k, i := range idx[:n] {
		gpus[i].Used++
		ids[k] = gpus[i].ID
	}
	slices.Sort(ids)
	return ids, true
}

func satAdd(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}
