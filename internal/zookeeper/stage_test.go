package zookeeper

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestSettingsDefaults(t *testing.T) {
	got := Settings{}.WithDefaults()
	want := Settings{Function: "ocr", BatchSize: 8, MaxContainers: 1, BatchTimeout: Duration(5 * time.Minute),
		IdleTimeout: Duration(30 * time.Second), MaxLifetime: Duration(time.Hour), MaxDeliveries: 3}
	if got != want {
		t.Errorf("WithDefaults() = %+v, want %+v", got, want)
	}
	set := Settings{Function: "noop", BatchSize: 2, MaxContainers: 4, MaxDeliveries: 1, IdleTimeout: Duration(time.Second)}
	if got := set.WithDefaults(); got.Function != "noop" || got.BatchSize != 2 || got.MaxContainers != 4 ||
		got.MaxDeliveries != 1 || got.IdleTimeout != Duration(time.Second) {
		t.Errorf("WithDefaults overrode set fields: %+v", got)
	}
}

func TestSettingsValidate(t *testing.T) {
	tests := []struct {
		s    Settings
		want string // "" = valid
	}{
		{Settings{}, ""},
		{Settings{Function: "recognize", Image: "pero/function:1", MinContainers: 2, MaxContainers: 4, GPUs: 1, CPUs: 1.5}, ""},
		{Settings{Output: true}, ""},
		{Settings{MinContainers: 2}, "max_containers: must be >= min_containers"},
		{Settings{MinContainers: -1}, "min_containers: must be >= 0"},
		{Settings{MaxContainers: -1}, "max_containers: must be >= 1"},
		{Settings{BatchSize: -1}, "batch_size"},
		{Settings{GPUs: -1}, "gpus"},
		{Settings{CPUs: -0.5}, "cpus"},
		{Settings{MemoryMB: -1}, "memory_mb"},
		{Settings{BatchTimeout: Duration(-time.Second)}, "batch_timeout"},
		{Settings{IdleTimeout: Duration(-time.Second)}, "idle_timeout"},
		{Settings{MaxLifetime: Duration(-time.Second)}, "max_lifetime"},
		{Settings{MaxBatches: -1}, "max_batches"},
		{Settings{MaxDeliveries: -1}, "max_deliveries"},
		{Settings{Function: "no spaces"}, "function"},
		{Settings{Image: "a b"}, "image"},
		{Settings{Output: true, MinContainers: 1, MaxContainers: 1}, "min_containers: must be 0 for an output stage"},
	}
	for _, tt := range tests {
		err := tt.s.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Validate(%+v) = %v", tt.s, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Validate(%+v) = %v, want %q", tt.s, err, tt.want)
		}
	}
}

func TestSettingsJSON(t *testing.T) {
	s := Settings{Function: "detect", Image: "img", BatchSize: 4, MinContainers: 1, MaxContainers: 3, GPUs: 1,
		CPUs: 2.5, MemoryMB: 2048, BatchTimeout: Duration(90 * time.Second), IdleTimeout: Duration(30 * time.Second),
		MaxLifetime: Duration(time.Hour), MaxBatches: 100, MaxDeliveries: 5, Output: false}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"function":"detect","image":"img","batch_size":4,"min_containers":1,"max_containers":3,"gpus":1,` +
		`"cpus":2.5,"memory_mb":2048,"batch_timeout":"1m30s","idle_timeout":"30s","max_lifetime":"1h0m0s",` +
		`"max_batches":100,"max_deliveries":5,"output":false}`
	if string(b) != want {
		t.Errorf("JSON:\n%s\nwant\n%s", b, want)
	}
	var back Settings
	if err := json.Unmarshal(b, &back); err != nil || back != s {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"idle_timeout":30}`), &back); err == nil {
		t.Error("a number as a duration was accepted")
	}
	if err := json.Unmarshal([]byte(`{"idle_timeout":"soon"}`), &back); err == nil {
		t.Error("a bad duration was accepted")
	}
}

func TestStageLifecycle(t *testing.T) {
	s := newStore(t)
	ctx := testContext(t)
	s.now = func() time.Time { return time.Date(2024, 5, 1, 12, 0, 0, 500000000, time.UTC) }

	if names, err := s.ListStages(ctx); err != nil || len(names) != 0 {
		t.Fatalf("ListStages on an empty root = %v, %v", names, err)
	}
	in := Stage{
		Name:                   "recognize",
		Config:                 "[OCR]\nmodel = x\n",
		ConfigPath:             "models/recognize.zip",
		AdministrativePriority: 5,
		AvgMsgTime:             3,
		ModelSHA256:            strings.ToUpper(sha),
		Settings:               Settings{Function: "recognize", MaxContainers: 2},
	}
	if err := s.CreateStage(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateStage(ctx, in); !errors.Is(err, ErrExists) {
		t.Errorf("second CreateStage: %v, want ErrExists", err)
	}
	if err := s.CreateStage(ctx, Stage{Name: "detect"}); err != nil {
		t.Fatal(err)
	}

	got, err := s.GetStage(ctx, "recognize")
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.ConfigVersion = "2024-05-01T12:00:00.500000+00:00"
	want.ModelSHA256 = sha
	want.Settings = in.Settings.WithDefaults()
	want.Version = 0
	if got != want {
		t.Errorf("GetStage:\n got %+v\nwant %+v", got, want)
	}

	// The raw nodes, as the original's tools read them.
	raw := func(node string) []byte {
		t.Helper()
		b, _, err := s.Conn().Get(s.stagePath("recognize") + "/" + node)
		if err != nil {
			t.Fatalf("read %s: %v", node, err)
		}
		return b
	}
	if b := raw(nodeAdminPriority); hex.EncodeToString(b) != "00000000000000000000000000000000000000000000000000000005" {
		t.Errorf("administrative_priority = %x", b)
	}
	if b := raw(nodeAvgMsgTime); string(b) != "0x1.8000000000000p+1" {
		t.Errorf("avg_msg_time = %q", b)
	}
	if b := raw(nodeConfigVersion); string(b) != "2024-05-01T12:00:00.500000+00:00" {
		t.Errorf("config_version = %q", b)
	}
	if b := raw(nodeWaitingSince); len(b) != 0 {
		t.Errorf("waiting_since = %q", b)
	}
	if b := raw(nodeSettings); !strings.Contains(string(b), `"max_containers":2`) {
		t.Errorf("settings = %s", b)
	}
	// A new stage without a measurement has an empty avg_msg_time, as the original creates it.
	if b, _, _ := s.Conn().Get(s.stagePath("detect") + "/" + nodeAvgMsgTime); len(b) != 0 {
		t.Errorf("avg_msg_time of a new stage = %q", b)
	}

	if names, err := s.ListStages(ctx); err != nil || !slices.Equal(names, []string{"detect", "recognize"}) {
		t.Errorf("ListStages = %v, %v", names, err)
	}

	// A priority change leaves the configuration version alone.
	up, err := s.UpdateStage(ctx, "recognize", func(st *Stage) error { st.AdministrativePriority = 1 << 40; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if up.ConfigVersion != want.ConfigVersion || up.Version != 0 || up.AdministrativePriority != 1<<40 {
		t.Errorf("after a priority change: %+v", up)
	}
	// A configuration change bumps it.
	s.now = func() time.Time { return time.Date(2024, 5, 2, 8, 0, 0, 0, time.UTC) }
	up, err = s.UpdateStage(ctx, "recognize", func(st *Stage) error {
		st.Settings.BatchSize = 16
		st.Version = 99 // read-only: ignored
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if up.ConfigVersion != "2024-05-02T08:00:00+00:00" || up.Version != 1 || up.Settings.BatchSize != 16 {
		t.Errorf("after a settings change: %+v", up)
	}
	got, err = s.GetStage(ctx, "recognize")
	if err != nil || got != up {
		t.Errorf("GetStage after update:\n got %+v, %v\nwant %+v", got, err, up)
	}
	// A version given by the caller wins.
	up, err = s.UpdateStage(ctx, "recognize", func(st *Stage) error {
		st.Config = "[OCR]\nmodel = y\n"
		st.ConfigVersion = "v7"
		return nil
	})
	if err != nil || up.ConfigVersion != "v7" || up.Version != 2 {
		t.Errorf("update with an explicit version: %+v, %v", up, err)
	}
	// No change writes nothing.
	same, err := s.UpdateStage(ctx, "recognize", func(*Stage) error { return nil })
	if err != nil || same != up {
		t.Errorf("no-op update: %+v, %v", same, err)
	}

	if err := s.DeleteStage(ctx, "recognize"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetStage(ctx, "recognize"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetStage after delete: %v, want ErrNotFound", err)
	}
	if err := s.DeleteStage(ctx, "recognize"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteStage: %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateStage(ctx, "recognize", func(*Stage) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateStage of a deleted stage: %v, want ErrNotFound", err)
	}
	if names, err := s.ListStages(ctx); err != nil || !slices.Equal(names, []string{"detect"}) {
		t.Errorf("ListStages after delete = %v, %v", names, err)
	}
}

func TestStageInvalid(t *testing.T) {
	s := newStore(t)
	ctx := testContext(t)
	for _, name := range []string{"", ".", "..", "a/b", "tab\there"} {
		if err := s.CreateStage(ctx, Stage{Name: name}); err == nil {
			t.Errorf("CreateStage(%q) succeeded", name)
		}
	}
	err := s.CreateStage(ctx, Stage{Name: "x", Settings: Settings{MinContainers: 3, MaxContainers: 2}})
	if err == nil || !strings.Contains(err.Error(), "max_containers: must be >= min_containers") {
		t.Errorf("CreateStage with bad settings: %v", err)
	}
	if err := s.CreateStage(ctx, Stage{Name: "x", ModelSHA256: "abc"}); err == nil || !strings.Contains(err.Error(), "model_sha256") {
		t.Errorf("CreateStage with a bad sha256: %v", err)
	}
	if err := s.CreateStage(ctx, Stage{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.UpdateStage(ctx, "x", func(st *Stage) error { st.Settings.MaxContainers = -2; return nil })
	if err == nil || !strings.Contains(err.Error(), "max_containers") {
		t.Errorf("UpdateStage to bad settings: %v", err)
	}
	_, err = s.UpdateStage(ctx, "x", func(st *Stage) error { st.Name = "y"; return nil })
	if err == nil || !strings.Contains(err.Error(), "name") {
		t.Errorf("UpdateStage renaming: %v", err)
	}
	boom := errors.New("boom")
	if _, err := s.UpdateStage(ctx, "x", func(*Stage) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("UpdateStage with a failing fn: %v", err)
	}
}

// createOriginalStage writes a stage node by node as the original's stage_config_manager.py does
// (kazoo ensure_path and set), without the nodes this package adds.
func createOriginalStage(t *testing.T, s *Store, name string) {
	t.Helper()
	conn := s.Conn()
	dir := s.stagePath(name)
	if err := s.ensurePath(testContext(t), dir); err != nil {
		t.Fatal(err)
	}
	for node, data := range map[string][]byte{
		nodeConfig:        []byte("[PAGE_PARSER]\nRUN_LAYOUT_PARSER = yes\n"),
		nodeConfigPath:    []byte("pero/layout.zip"),
		nodeConfigVersion: []byte("2023-01-02T03:04:05.678901+00:00"),
		nodeAdminPriority: make([]byte, 24), // int.to_bytes(0, sys.getsizeof(0), 'big') on Python 3.9
		nodeAvgMsgTime:    []byte("0x1.4000000000000p+1"),
		nodeWaitingSince:  nil,
	} {
		if _, err := conn.Create(dir+"/"+node, data, 0, s.ACL()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStageOfTheOriginal(t *testing.T) {
	s := newStore(t)
	ctx := testContext(t)
	createOriginalStage(t, s, "layout")

	got, err := s.GetStage(ctx, "layout")
	if err != nil {
		t.Fatal(err)
	}
	want := Stage{
		Name:          "layout",
		Config:        "[PAGE_PARSER]\nRUN_LAYOUT_PARSER = yes\n",
		ConfigPath:    "pero/layout.zip",
		ConfigVersion: "2023-01-02T03:04:05.678901+00:00",
		AvgMsgTime:    2.5,
		Settings:      Settings{}.WithDefaults(),
		Version:       0,
	}
	if got != want {
		t.Errorf("GetStage:\n got %+v\nwant %+v", got, want)
	}

	// A priority written by the original's tool: int.to_bytes(3, sys.getsizeof(3), 'big').
	if _, err := s.Conn().Set(s.stagePath("layout")+"/"+nodeAdminPriority, append(make([]byte, 27), 3), -1); err != nil {
		t.Fatal(err)
	}
	up, err := s.UpdateStage(ctx, "layout", func(st *Stage) error {
		st.AdministrativePriority++
		st.Settings.Image = "pero/layout:2"
		st.ModelSHA256 = sha
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if up.AdministrativePriority != 4 || up.Settings.Image != "pero/layout:2" || up.ModelSHA256 != sha ||
		up.ConfigVersion == want.ConfigVersion {
		t.Errorf("UpdateStage: %+v", up)
	}
	if got, err := s.GetStage(ctx, "layout"); err != nil || got != up {
		t.Errorf("GetStage after update:\n got %+v, %v\nwant %+v", got, err, up)
	}
	if err := s.RecordTiming(ctx, "layout", Timing{Container: "c1", Messages: 2, Seconds: 1}); err != nil {
		t.Fatalf("RecordTiming on a stage of the original: %v", err)
	}
	if err := s.DeleteStage(ctx, "layout"); err != nil {
		t.Fatal(err)
	}
}

func TestUpdateStageConcurrent(t *testing.T) {
	cfg := testConfig(t, "")
	stores := []*Store{dialStore(t, cfg), dialStore(t, cfg)}
	ctx := testContext(t)
	if err := stores[0].CreateStage(ctx, Stage{Name: "count"}); err != nil {
		t.Fatal(err)
	}
	const workers, increments = 8, 5
	var calls atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers*increments)
	for w := range workers {
		wg.Go(func() {
			s := stores[w%len(stores)]
			for range increments {
				_, err := s.UpdateStage(ctx, "count", func(st *Stage) error {
					calls.Add(1)
					st.AdministrativePriority++
					st.Settings.MaxBatches++
					return nil
				})
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st, err := stores[1].GetStage(ctx, "count")
	if err != nil {
		t.Fatal(err)
	}
	if st.AdministrativePriority != workers*increments || st.Settings.MaxBatches != workers*increments {
		t.Errorf("after %d increments: priority %d, max_batches %d", workers*increments,
			st.AdministrativePriority, st.Settings.MaxBatches)
	}
	t.Logf("%d increments took %d attempts", workers*increments, calls.Load())
}

// An update must not overwrite what another tool wrote between its read and its write.
func TestUpdateStageDetectsForeignWrite(t *testing.T) {
	s := newStore(t)
	ctx := testContext(t)
	if err := s.CreateStage(ctx, Stage{Name: "x", Config: "a"}); err != nil {
		t.Fatal(err)
	}
	calls := 0
	up, err := s.UpdateStage(ctx, "x", func(st *Stage) error {
		calls++
		if calls == 1 { // the original's tool writes config meanwhile
			if _, err := s.Conn().Set(s.stagePath("x")+"/"+nodeConfig, []byte("b"), -1); err != nil {
				return err
			}
		}
		st.ConfigPath = fmt.Sprintf("model-%d.zip", calls)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 || up.Config != "b" || up.ConfigPath != "model-2.zip" {
		t.Errorf("calls %d, stage %+v", calls, up)
	}
}

func TestUpdateStageHonoursContext(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(testContext(t))
	if err := s.CreateStage(ctx, Stage{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	_, err := s.UpdateStage(ctx, "x", func(st *Stage) error {
		cancel()
		st.Config = "never"
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("UpdateStage: %v, want context.Canceled", err)
	}
}

func TestWatchStage(t *testing.T) {
	cfg := testConfig(t, "")
	s, writer := dialStore(t, cfg), dialStore(t, cfg)
	ctx := testContext(t)
	if _, err := s.WatchStage(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("WatchStage of a missing stage: %v, want ErrNotFound", err)
	}
	if err := writer.CreateStage(ctx, Stage{Name: "ocr", Config: "v1"}); err != nil {
		t.Fatal(err)
	}
	watchCtx, stop := context.WithCancel(ctx)
	ch, err := s.WatchStage(watchCtx, "ocr")
	if err != nil {
		t.Fatal(err)
	}
	if st := <-ch; st.Config != "v1" {
		t.Errorf("first stage: %+v", st)
	}

	if _, err := writer.UpdateStage(ctx, "ocr", func(st *Stage) error { st.Settings.MaxContainers = 3; return nil }); err != nil {
		t.Fatal(err)
	}
	nextStage(t, ch, func(st Stage) bool { return st.Settings.MaxContainers == 3 })

	// A node added by a newer tool, or written raw by an older one, is seen too.
	if _, err := writer.Conn().Set(writer.stagePath("ocr")+"/"+nodeConfigPath, []byte("m.zip"), -1); err != nil {
		t.Fatal(err)
	}
	nextStage(t, ch, func(st Stage) bool { return st.ConfigPath == "m.zip" })
	if err := writer.Conn().Delete(writer.stagePath("ocr")+"/"+nodeSettings, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.UpdateStage(ctx, "ocr", func(st *Stage) error { st.Settings.GPUs = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	nextStage(t, ch, func(st Stage) bool { return st.Settings.GPUs == 1 && st.Settings.MaxContainers == 1 })

	stop()
	for range ch { // closed once ctx ends
	}

	ch, err = s.WatchStage(ctx, "ocr")
	if err != nil {
		t.Fatal(err)
	}
	<-ch
	if err := writer.DeleteStage(ctx, "ocr"); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-ch:
		case <-deadline:
			t.Fatal("watch not closed after the stage was deleted")
		}
	}
}

// The watch channel of a Store that is closed is closed too.
func TestWatchStageEndsWithStore(t *testing.T) {
	s := newStore(t)
	ctx := testContext(t)
	if err := s.CreateStage(ctx, Stage{Name: "ocr"}); err != nil {
		t.Fatal(err)
	}
	ch, err := s.WatchStage(ctx, "ocr")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for range ch {
	}
	if _, err := s.WatchStage(ctx, "ocr"); err == nil {
		t.Error("WatchStage on a closed Store succeeded")
	}
}
