package runner

import (
	"cmp"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/message"
)

// fakeSuspects is an in-memory suspectRecords.
type fakeSuspects map[string]bool

func (f fakeSuspects) begin(uuid, _ string, _ int32) error { f[uuid] = true; return nil }
func (f fakeSuspects) end(uuid string) error               { delete(f, uuid); return nil }
func (f fakeSuspects) crashed(uuid string) (bool, error)   { return f[uuid], nil }

func TestTriageRules(t *testing.T) {
	const stage = "s"
	body := func(attempts int32, route ...string) []byte {
		r, err := message.NewRequest("p.jpg", []byte("img"), route, 0, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		r.Uuid, r.Attempts = "u", attempts
		b, _ := message.Encode(r)
		return b
	}
	tests := []struct {
		name        string
		body        []byte
		redelivered bool
		recorded    bool
		// want: "job" (processed now), "requeue" (republished to the stage with attempts),
		// or a dead-letter reason
		want         string
		wantAttempts int32
		max          int // max_deliveries; 0 means 3
	}{
		{"fresh", body(0, stage, "out"), false, false, "job", 0, 0},
		{"fresh suspect", body(2, stage, "out"), false, false, "job", 2, 0},
		{"redelivered from a batch", body(0, stage, "out"), true, false, "requeue", 1, 0},
		{"redelivered, max 1, still gets a run alone", body(0, stage, "out"), true, false, "requeue", 1, 1},
		{"max 1, crashed alone once", body(1, stage, "out"), true, true, reasonMaxDeliveries, 0, 1},
		{"suspect held in a prefetch window", body(1, stage, "out"), true, false, "job", 1, 0},
		{"suspect that crashed alone", body(1, stage, "out"), true, true, "requeue", 2, 0},
		{"suspect that crashed alone too often", body(2, stage, "out"), true, true, reasonMaxDeliveries, 0, 0},
		{"garbage", []byte("\xff\xff"), false, false, reasonMalformed, 0, 0},
		{"other stage", body(0, "x", "out"), false, false, reasonWrongStage, 0, 0},
		{"route ends here", body(0, stage), false, false, reasonNoNextStage, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pub := &fakePub{}
			sus := fakeSuspects{}
			if tc.recorded {
				sus["u"] = true
			}
			cnt := &counters{}
			clk := newFakeClock(time.Unix(0, 0))
			c := newConsumer(stage, cmp.Or(tc.max, 3), 8, nil, pub,
				&deadLetters{stage: stage, container: "c", pub: pub, counters: cnt, clock: clk, log: testLog(t)},
				sus, cnt, clk, testLog(t))
			ack := &countAck{}
			j, err := c.triage(incoming{ack: ack, body: tc.body, redelivered: tc.redelivered})
			if err != nil {
				t.Fatal(err)
			}
			switch tc.want {
			case "job":
				if j == nil || ack.acks != 0 || len(pub.sent) != 0 || j.req.GetAttempts() != tc.wantAttempts {
					t.Fatalf("job %v, acks %d, sent %d", j, ack.acks, len(pub.sent))
				}
			case "requeue":
				if j != nil || ack.acks != 1 || len(pub.sent) != 1 || pub.sent[0].queue != stage {
					t.Fatalf("job %v, acks %d, sent %+v", j, ack.acks, pub.sent)
				}
				got, _ := message.Decode(pub.sent[0].msg.Body)
				if got.GetAttempts() != tc.wantAttempts {
					t.Errorf("attempts %d, want %d", got.GetAttempts(), tc.wantAttempts)
				}
			default:
				if j != nil || ack.acks != 1 || len(pub.sent) != 1 || pub.sent[0].queue != stage+".dead" ||
					pub.sent[0].msg.Headers[HeaderReason] != tc.want || string(pub.sent[0].msg.Body) != string(tc.body) {
					t.Fatalf("job %v, acks %d, sent %+v", j, ack.acks, pub.sent)
				}
			}
			if tc.recorded && tc.want != "job" && sus["u"] {
				t.Error("the suspect record outlived the count")
			}
		})
	}
}
