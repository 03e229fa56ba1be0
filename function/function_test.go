package function_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/function"
)

func TestRegistry(t *testing.T) {
	r := function.NewRegistry()
	r.Register("noop", function.Noop)
	r.Register("sleep", function.Sleep)
	if got := strings.Join(r.Names(), ","); got != "noop,sleep" {
		t.Fatalf("Names = %q", got)
	}
	_, err := r.New(context.Background(), "nope", function.Options{})
	if err == nil || !strings.Contains(err.Error(), "noop, sleep") {
		t.Fatalf("unknown name: err = %v, want the known names listed", err)
	}
	fn, err := r.New(context.Background(), "noop", function.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fn.Close()
	out := fn.Process(context.Background(), []function.Page{{Name: "a"}, {Name: "b"}})
	if len(out) != 2 || out[0].Err != nil || len(out[0].Files) != 0 {
		t.Fatalf("noop out = %+v", out)
	}
	r.Register("bad", func(context.Context, function.Options) (function.Function, error) {
		return nil, errors.New("boom")
	})
	if _, err := r.New(context.Background(), "bad", function.Options{}); err == nil || !strings.Contains(err.Error(), "bad: boom") {
		t.Fatalf("factory error = %v", err)
	}
}

func TestRegistryConcurrent(t *testing.T) {
	r := function.NewRegistry()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Register(string(rune('a'+i)), function.Noop)
			_ = r.Names()
			_, _ = r.New(context.Background(), "a", function.Options{})
		}()
	}
	wg.Wait()
	if len(r.Names()) != 8 {
		t.Fatalf("Names = %v", r.Names())
	}
}

func TestNoopCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fn, _ := function.Noop(ctx, function.Options{})
	out := fn.Process(ctx, []function.Page{{Name: "a"}})
	if !errors.Is(out[0].Err, context.Canceled) {
		t.Fatalf("err = %v", out[0].Err)
	}
}

func TestSleep(t *testing.T) {
	fn, err := function.Sleep(context.Background(), function.Options{Config: "[sleep]\nseconds = 0.01\nfail_marker = FAIL\n"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out := fn.Process(context.Background(), []function.Page{{Name: "a"}, {Name: "x-FAIL-y"}, {Name: "c"}})
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("3 pages took %v, want >= 30ms", d)
	}
	if len(out) != 3 || out[0].Err != nil || out[2].Err != nil {
		t.Fatalf("out = %+v", out)
	}
	if !errors.Is(out[1].Err, function.ErrMarked) {
		t.Fatalf("marked page err = %v", out[1].Err)
	}
}

func TestSleepCancel(t *testing.T) {
	fn, err := function.Sleep(context.Background(), function.Options{Config: "[sleep]\nseconds = 10\n"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan []function.Output)
	go func() { done <- fn.Process(ctx, make([]function.Page, 3)) }()
	cancel()
	select {
	case out := <-done:
		for i, o := range out {
			if !errors.Is(o.Err, context.Canceled) {
				t.Errorf("page %d err = %v", i, o.Err)
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Process did not return after cancel")
	}
}

func TestSleepBadConfig(t *testing.T) {
	for _, cfg := range []string{"[sleep]\nseconds = abc\n", "[sleep]\nseconds = -1\n", "[sleep\n"} {
		if _, err := function.Sleep(context.Background(), function.Options{Config: cfg}); err == nil {
			t.Errorf("config %q: no error", cfg)
		}
	}
}

func TestINI(t *testing.T) {
	ini, err := function.ParseINI("top = 1\n# c\n[Det]\nLimit: 960\n; c\nname = a\n  b\nflag = yes\n")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := ini.Int("det", "limit", 0); v != 960 {
		t.Errorf("limit = %d", v)
	}
	if v := ini.String("DET", "name", ""); v != "a\nb" {
		t.Errorf("name = %q", v)
	}
	if v, _ := ini.Bool("det", "flag", false); !v {
		t.Error("flag false")
	}
	if v := ini.String("", "top", ""); v != "1" {
		t.Errorf("top = %q", v)
	}
	if _, err := ini.Int("det", "name", 0); err == nil || !strings.Contains(err.Error(), "name") {
		t.Errorf("bad int err = %v", err)
	}
	if v, _ := ini.Float("x", "y", 2.5); v != 2.5 {
		t.Errorf("default = %v", v)
	}
}

func TestStem(t *testing.T) {
	for in, want := range map[string]string{"a.png": "a", "a.b.jpg": "a.b", "dir.x/a": "dir.x/a", "a": "a", ".hidden": ".hidden"} {
		if got := function.Stem(in); got != want {
			t.Errorf("Stem(%q) = %q, want %q", in, got, want)
		}
	}
}
