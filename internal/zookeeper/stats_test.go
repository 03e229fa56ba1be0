package zookeeper

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"
)

func TestRecordTimingConcurrent(t *testing.T) {
	cfg := testConfig(t, "")
	stores := []*Store{dialStore(t, cfg), dialStore(t, cfg)}
	s := stores[0]
	ctx := testContext(t)
	if err := s.CreateStage(ctx, Stage{Name: "ocr"}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.SecondsPerMessage(ctx, "ocr"); err != nil || v != 0 {
		t.Errorf("SecondsPerMessage before any timing = %v, %v; want 0", v, err)
	}

	// Four containers report growing totals at different speeds: container i takes i+1 seconds
	// per message.
	const containers, reports = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, containers*reports)
	for i := range containers {
		wg.Go(func() {
			st := stores[i%len(stores)]
			for r := 1; r <= reports; r++ {
				msgs := int64(r * (i + 1))
				err := st.RecordTiming(ctx, "ocr", Timing{
					Container: fmt.Sprintf("c%d", i),
					Messages:  msgs,
					Seconds:   float64(msgs) * float64(i+1),
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

	ts, err := s.Timings(ctx, "ocr")
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != containers {
		t.Fatalf("Timings = %+v", ts)
	}
	var msgs int64
	var secs float64
	for i, tm := range ts {
		wantMsgs := int64(reports * (i + 1))
		if tm.Container != fmt.Sprintf("c%d", i) || tm.Messages != wantMsgs || tm.Seconds != float64(wantMsgs)*float64(i+1) ||
			time.Since(tm.Updated) > time.Minute {
			t.Errorf("timing %d = %+v", i, tm)
		}
		msgs += tm.Messages
		secs += tm.Seconds
	}
	got, err := s.SecondsPerMessage(ctx, "ocr")
	if want := secs / float64(msgs); err != nil || math.Abs(got-want) > 1e-12 {
		t.Errorf("SecondsPerMessage = %v, %v; want %v (message-weighted)", got, err, want)
	}

	// Every sample was between 1 and 4 seconds per message, so is their weighted average.
	st, err := s.GetStage(ctx, "ocr")
	if err != nil {
		t.Fatal(err)
	}
	if st.AvgMsgTime < 1 || st.AvgMsgTime > 4 {
		t.Errorf("avg_msg_time = %v, want within [1, 4]", st.AvgMsgTime)
	}
	raw, _, err := s.Conn().Get(s.stagePath("ocr") + "/" + nodeAvgMsgTime)
	if err != nil || string(raw) != formatFloatHex(st.AvgMsgTime) {
		t.Errorf("avg_msg_time node = %q, %v", raw, err)
	}

	if err := s.RemoveTiming(ctx, "ocr", "c3"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveTiming(ctx, "ocr", "c3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second RemoveTiming: %v, want ErrNotFound", err)
	}
	if ts, err := s.Timings(ctx, "ocr"); err != nil || len(ts) != containers-1 {
		t.Errorf("Timings after remove = %+v, %v", ts, err)
	}
}

func TestRecordTimingFolding(t *testing.T) {
	s := newStore(t)
	ctx := testContext(t)
	if err := s.CreateStage(ctx, Stage{Name: "ocr"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordTiming(ctx, "ocr", Timing{Container: "a", Messages: 2, Seconds: 4}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.GetStage(ctx, "ocr"); st.AvgMsgTime != 2 {
		t.Errorf("first sample: avg_msg_time = %v, want 2", st.AvgMsgTime)
	}
	if err := s.RecordTiming(ctx, "ocr", Timing{Container: "a", Messages: 4, Seconds: 24}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.GetStage(ctx, "ocr"); st.AvgMsgTime != avgWeight*6+(1-avgWeight)*2 {
		t.Errorf("second sample: avg_msg_time = %v, want %v", st.AvgMsgTime, avgWeight*6+(1-avgWeight)*2)
	}
	// No messages: the node is written, the average is left alone.
	if err := s.RecordTiming(ctx, "ocr", Timing{Container: "idle"}); err != nil {
		t.Fatal(err)
	}
	if ts, err := s.Timings(ctx, "ocr"); err != nil || len(ts) != 2 {
		t.Errorf("Timings = %+v, %v", ts, err)
	}
}

func TestSecondsPerMessageFallsBack(t *testing.T) {
	s := newStore(t)
	ctx := testContext(t)
	createOriginalStage(t, s, "layout") // avg_msg_time 0x1.4000000000000p+1, no stats node
	if got, err := s.SecondsPerMessage(ctx, "layout"); err != nil || got != 2.5 {
		t.Errorf("SecondsPerMessage = %v, %v; want 2.5 from avg_msg_time", got, err)
	}
	if ts, err := s.Timings(ctx, "layout"); err != nil || len(ts) != 0 {
		t.Errorf("Timings = %v, %v", ts, err)
	}
}

func TestTimingErrors(t *testing.T) {
	s := newStore(t)
	ctx := testContext(t)
	if err := s.RecordTiming(ctx, "missing", Timing{Container: "c", Messages: 1, Seconds: 1}); !errors.Is(err, ErrNotFound) {
		t.Errorf("RecordTiming on a missing stage: %v, want ErrNotFound", err)
	}
	if _, err := s.Timings(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Timings of a missing stage: %v, want ErrNotFound", err)
	}
	if _, err := s.SecondsPerMessage(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SecondsPerMessage of a missing stage: %v, want ErrNotFound", err)
	}
	if err := s.CreateStage(ctx, Stage{Name: "ocr"}); err != nil {
		t.Fatal(err)
	}
	for _, tm := range []Timing{
		{Container: "", Messages: 1},
		{Container: "a/b", Messages: 1},
		{Container: "c", Messages: -1},
		{Container: "c", Seconds: math.NaN()},
		{Container: "c", Seconds: -1},
	} {
		if err := s.RecordTiming(ctx, "ocr", tm); err == nil {
			t.Errorf("RecordTiming(%+v) succeeded", tm)
		}
	}
	// An unreadable node from some other writer is skipped, not fatal.
	if _, err := s.Conn().Create(s.statsPath("ocr")+"/junk", []byte("{"), 0, s.ACL()); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordTiming(ctx, "ocr", Timing{Container: "c", Messages: 3, Seconds: 1.5}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.SecondsPerMessage(ctx, "ocr"); err != nil || got != 0.5 {
		t.Errorf("SecondsPerMessage = %v, %v; want 0.5", got, err)
	}
}
