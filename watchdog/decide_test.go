package watchdog

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// st builds a launchable stage with max 4, batch 8 and 1 s per message unless changed.
func st(name string, ready int, mods ...func(*StageView)) StageView {
	s := StageView{Name: name, Ready: ready, Max: 4, BatchSize: 8, SecondsPerMessage: 1}
	for _, m := range mods {
		m(&s)
	}
	return s
}

func prio(p uint64) func(*StageView)  { return func(s *StageView) { s.Priority = p } }
func maxC(n int) func(*StageView)     { return func(s *StageView) { s.Max = n } }
func minC(n int) func(*StageView)     { return func(s *StageView) { s.Min = n } }
func unacked(n int) func(*StageView)  { return func(s *StageView) { s.Unacked = n } }
func starting(n int) func(*StageView) { return func(s *StageView) { s.Starting = n } }
func running(n int) func(*StageView)  { return func(s *StageView) { s.Running = n } }
func draining(n int) func(*StageView) { return func(s *StageView) { s.Draining = n } }
func spm(f float64) func(*StageView)  { return func(s *StageView) { s.SecondsPerMessage = f } }
func batch(n int) func(*StageView)    { return func(s *StageView) { s.BatchSize = n } }
func gpus(n int) func(*StageView)     { return func(s *StageView) { s.GPUs = n } }
func slots(n int) func(*StageView)    { return func(s *StageView) { s.CPUSlots = n } }
func blocked(r string) func(*StageView) {
	return func(s *StageView) { s.Blocked = r }
}
func waiting(d time.Duration) func(*StageView) {
	return func(s *StageView) { s.WaitingSince = t0.Add(-d) }
}
func failing(n int, until time.Duration) func(*StageView) {
	return func(s *StageView) { s.Failures, s.BackoffUntil = n, t0.Add(until) }
}

// launches renders the plan's launches as "stage" or "stage[gpu,gpu]", in order.
func launches(p Plan) string {
	var out []string
	for _, l := range p.Launches {
		if len(l.GPUs) > 0 {
			out = append(out, fmt.Sprintf("%s%v", l.Stage, l.GPUs))
		} else {
			out = append(out, l.Stage)
		}
	}
	return strings.Join(out, " ")
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name   string
		stages []StageView
		cap    Capacity
		pol    Policy
		want   string         // launches in order
		desire map[string]int // desired per stage, when checked
		held   map[string]string
		wait   []string // stages left waiting
	}{
		{name: "empty queue launches nothing", stages: []StageView{st("a", 0)}, want: "",
			desire: map[string]int{"a": 0}},
		{name: "min containers kept with an empty queue", stages: []StageView{st("a", 0, minC(2))},
			want: "a a", desire: map[string]int{"a": 2}},
		{name: "min already met", stages: []StageView{st("a", 0, minC(2), running(2))}, want: ""},
		{name: "one message gives one container", stages: []StageView{st("a", 1)}, want: "a"},
		{name: "backlog sized by time: 100 x 1s / 30s = 4", stages: []StageView{st("a", 100, maxC(10))},
			want: "a a a a", desire: map[string]int{"a": 4}},
		{name: "max caps the backlog's wish", stages: []StageView{st("a", 1000)}, want: "a a a a",
			desire: map[string]int{"a": 4}, held: map[string]string{"a": HeldMax}},
		{name: "fast messages need one container", stages: []StageView{st("a", 100, spm(0.01))},
			want: "a", desire: map[string]int{"a": 1}},
		{name: "unmeasured stage assumes the default", stages: []StageView{st("a", 60, spm(0))},
			want: "a a", desire: map[string]int{"a": 2}},
		{name: "target drain is configurable", stages: []StageView{st("a", 60, maxC(10))},
			pol: Policy{TargetDrain: 10 * time.Second}, want: "a a a a a a"},
		{name: "no more containers than batches", stages: []StageView{st("a", 20, spm(10), batch(8))},
			want: "a a a", desire: map[string]int{"a": 3}},
		{name: "unacked work counts as backlog", stages: []StageView{st("a", 0, unacked(16), spm(10), running(1))},
			want: "a", desire: map[string]int{"a": 2}},
		{name: "starting containers are not launched twice", stages: []StageView{st("a", 100, starting(4))},
			want: ""},
		{name: "starting and running count together", stages: []StageView{st("a", 100, starting(1), running(2))},
			want: "a"},
		{name: "in-flight backlog held by running containers launches nothing",
			stages: []StageView{st("a", 0, unacked(32), running(4), spm(5))}, want: ""},
		{name: "scale in never: more containers than desired launches nothing",
			stages: []StageView{st("a", 1, running(3))}, want: "", desire: map[string]int{"a": 1}},
		{name: "draining containers count against max but not as workers",
			stages: []StageView{st("a", 100, running(2), draining(1))}, want: "a",
			held: map[string]string{"a": HeldMax}},
		{name: "draining at max blocks", stages: []StageView{st("a", 100, running(0), draining(4))}, want: "",
			held: map[string]string{"a": HeldMax}},
		{name: "blocked stage launches nothing", stages: []StageView{st("a", 100, blocked("output stage"))},
			want: "", held: map[string]string{"a": "output stage"}},
		{name: "backoff holds the stage", stages: []StageView{st("a", 100, failing(1, time.Second))}, want: "",
			held: map[string]string{"a": HeldBackoff}},
		{name: "after backoff a failing stage probes with one container",
			stages: []StageView{st("a", 100, failing(2, -time.Second))}, want: "a",
			held: map[string]string{"a": HeldProbe}},
		{name: "a failing stage waits for its probe", stages: []StageView{st("a", 100, failing(2, -time.Second), starting(1))},
			want: "", held: map[string]string{"a": HeldProbe}},
		{name: "capacity shared by priority", cap: Capacity{CPUSlots: 2},
			stages: []StageView{st("lo", 100, prio(0)), st("hi", 100, prio(5))}, want: "hi hi",
			held: map[string]string{"lo": HeldCapacity}, wait: []string{"lo"}},
		{name: "equal priority spreads", cap: Capacity{CPUSlots: 2},
			stages: []StageView{st("a", 100), st("b", 100)}, want: "a b"},
		{name: "equal priority: fewer containers first", cap: Capacity{CPUSlots: 3},
			stages: []StageView{st("a", 100, running(2)), st("b", 100)}, want: "b", wait: []string{"a"}},
		{name: "equal priority and count: more work per container first", cap: Capacity{CPUSlots: 1},
			stages: []StageView{st("a", 10), st("b", 20)}, want: "b", wait: []string{"a"}},
		{name: "running containers use the capacity", cap: Capacity{CPUSlots: 2},
			stages: []StageView{st("hi", 100, prio(5), running(2)), st("lo", 100)}, want: "",
			wait: []string{"hi", "lo"}},
		{name: "the high-priority stage takes what is left first", cap: Capacity{CPUSlots: 2},
			stages: []StageView{st("hi", 100, prio(5), running(1)), st("lo", 100)}, want: "hi",
			wait: []string{"lo"}},
		{name: "aging lifts a waiting stage above a higher priority", cap: Capacity{CPUSlots: 1},
			stages: []StageView{st("hi", 100, prio(5)), st("lo", 100, waiting(60*time.Second))}, want: "lo",
			wait: []string{"hi"}},
		{name: "aging not yet enough", cap: Capacity{CPUSlots: 1},
			stages: []StageView{st("hi", 100, prio(5)), st("lo", 100, waiting(40*time.Second))}, want: "hi",
			wait: []string{"lo"}},
		{name: "aging interval is configurable", cap: Capacity{CPUSlots: 1}, pol: Policy{AgingInterval: time.Second},
			stages: []StageView{st("hi", 100, prio(5)), st("lo", 100, waiting(6*time.Second))}, want: "lo",
			wait: []string{"hi"}},
		{name: "a big container at the head is not overtaken", cap: Capacity{CPUSlots: 3},
			stages: []StageView{st("big", 100, prio(5), slots(4)), st("small", 100)}, want: "",
			held: map[string]string{"big": HeldCapacity, "small": HeldCapacity}, wait: []string{"big", "small"}},
		{name: "cpu slots per container", cap: Capacity{CPUSlots: 5},
			stages: []StageView{st("a", 100, slots(2))}, want: "a a"},
		{name: "containers of deleted stages use capacity", cap: Capacity{CPUSlots: 3, UsedElsewhere: 2},
			stages: []StageView{st("a", 100)}, want: "a"},
		{name: "blocked stages' containers use capacity", cap: Capacity{CPUSlots: 2},
			stages: []StageView{st("a", 100), st("out", 0, blocked("output"), running(1))}, want: "a"},
		{name: "gpus from the ledger, one container per gpu",
			cap:    Capacity{GPUs: []GPU{{ID: "0"}, {ID: "1", Used: 1}, {ID: "2"}}},
			stages: []StageView{st("ocr", 100, gpus(1))}, want: "ocr[0] ocr[2]",
			held: map[string]string{"ocr": HeldGPUs}},
		{name: "two gpus per container", cap: Capacity{GPUs: []GPU{{ID: "0"}, {ID: "1"}, {ID: "2"}}},
			stages: []StageView{st("ocr", 100, gpus(2))}, want: "ocr[0 1]", held: map[string]string{"ocr": HeldGPUs}},
		{name: "shared gpus, least used first", cap: Capacity{GPUs: []GPU{{ID: "0", Used: 1}, {ID: "1"}}, GPUShare: 2},
			stages: []StageView{st("ocr", 100, gpus(1))}, want: "ocr[1] ocr[0] ocr[1]",
			held: map[string]string{"ocr": HeldGPUs}},
		{name: "no gpu left: cpu stages still run", cap: Capacity{GPUs: []GPU{{ID: "0", Used: 1}}},
			stages: []StageView{st("ocr", 100, gpus(1), prio(9)), st("cpu", 10)}, want: "cpu",
			held: map[string]string{"ocr": HeldGPUs}, wait: []string{"ocr"}},
		{name: "no gpus at all", stages: []StageView{st("ocr", 100, gpus(1))}, want: "",
			held: map[string]string{"ocr": HeldGPUs}, wait: []string{"ocr"}},
		{name: "nonsense inputs are clamped", stages: []StageView{{Name: "x", Ready: 5, Unacked: -3, Max: 0, BatchSize: 0,
			Starting: -1, SecondsPerMessage: -1}}, want: "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Decide(Input{Now: t0, Stages: tc.stages, Capacity: tc.cap, Policy: tc.pol})
			if got := launches(p); got != tc.want {
				t.Errorf("launches = %q, want %q", got, tc.want)
			}
			for _, sp := range p.Stages {
				if d, ok := tc.desire[sp.Stage]; ok && sp.Desired != d {
					t.Errorf("%s: desired = %d, want %d", sp.Stage, sp.Desired, d)
				}
				if h, ok := tc.held[sp.Stage]; ok && sp.Held != h {
					t.Errorf("%s: held = %q, want %q", sp.Stage, sp.Held, h)
				}
				if w := slices.Contains(tc.wait, sp.Stage); sp.Waiting != w {
					t.Errorf("%s: waiting = %v, want %v", sp.Stage, sp.Waiting, w)
				}
			}
			for i, sp := range p.Stages {
				if m := max(tc.stages[i].Max, 1); sp.Launch > 0 && sp.Launch+sp.Alive > m {
					t.Errorf("%s: %d alive + %d launches exceed max %d", sp.Stage, sp.Alive, sp.Launch, m)
				}
			}
		})
	}
}

// TestDecideInvariants checks on random inputs what must hold whatever the input: no stage goes
// above its max, the CPU slots and GPU shares are never overcommitted by launches, blocked and
// backed-off stages launch nothing, and Decide is deterministic.
func TestDecideInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 5000 {
		n := 1 + rng.IntN(5)
		var stages []StageView
		for i := range n {
			s := StageView{
				Name: fmt.Sprintf("s%d", i), Priority: uint64(rng.IntN(4)), SecondsPerMessage: rng.Float64() * 3,
				BatchSize: rng.IntN(10), Min: rng.IntN(3), Max: rng.IntN(6), CPUSlots: rng.IntN(3), GPUs: rng.IntN(3) / 2,
				Ready: rng.IntN(300), Unacked: rng.IntN(50), Starting: rng.IntN(3), Running: rng.IntN(3),
				Draining: rng.IntN(2),
			}
			if rng.IntN(5) == 0 {
				s.WaitingSince = t0.Add(-time.Duration(rng.IntN(100)) * time.Second)
			}
			if rng.IntN(6) == 0 {
				s.Failures, s.BackoffUntil = 1+rng.IntN(3), t0.Add(time.Duration(rng.IntN(3)-1)*time.Second)
			}
			if rng.IntN(8) == 0 {
				s.Blocked = "blocked"
			}
			stages = append(stages, s)
		}
		capa := Capacity{CPUSlots: rng.IntN(8), GPUShare: rng.IntN(3), UsedElsewhere: rng.IntN(2)}
		for g := range rng.IntN(4) {
			capa.GPUs = append(capa.GPUs, GPU{ID: fmt.Sprint(g), Used: rng.IntN(2)})
		}
		in := Input{Now: t0, Stages: stages, Capacity: capa}
		p := Decide(in)
		if q := Decide(in); launches(q) != launches(p) {
			t.Fatalf("iter %d: not deterministic", iter)
		}
		newSlots := 0
		gpuUse := map[string]int{}
		for _, g := range capa.GPUs {
			gpuUse[g.ID] = g.Used
		}
		for i, sp := range p.Stages {
			s := stages[i]
			if sp.Launch > 0 && sp.Alive+sp.Launch > max(s.Max, 1) {
				t.Fatalf("iter %d: %s over max: %+v", iter, s.Name, sp)
			}
			if sp.Launch > 0 && (s.Blocked != "" || t0.Before(s.BackoffUntil)) {
				t.Fatalf("iter %d: %s launched while blocked or backing off", iter, s.Name)
			}
			if sp.Launch > 0 && s.Failures > 0 && (sp.Launch > 1 || sp.Active > 0) {
				t.Fatalf("iter %d: failing %s launched more than one probe", iter, s.Name)
			}
			newSlots += sp.Launch * max(s.CPUSlots, 1)
		}
		for _, l := range p.Launches {
			for _, g := range l.GPUs {
				gpuUse[g]++
				if gpuUse[g] > max(capa.GPUShare, 1) {
					t.Fatalf("iter %d: gpu %s overcommitted", iter, g)
				}
			}
		}
		if capa.CPUSlots > 0 && newSlots > 0 && p.CPUSlotsUsed > capa.CPUSlots {
			t.Fatalf("iter %d: %d slots used of %d after launching %d", iter, p.CPUSlotsUsed, capa.CPUSlots, newSlots)
		}
	}
}
