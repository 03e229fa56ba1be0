package runner

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/function"
	"github.com/pero-worker/pero-worker/internal/message"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
)

// sizedPub refuses bodies over limit as the broker does, and records what it took.
type sizedPub struct {
	fakePub
	limit int
}

func (p *sizedPub) Publish(ctx context.Context, queue string, m rabbitmq.Message) error {
	if len(m.Body) > p.limit {
		return fmt.Errorf("publish to %q: %w", queue, rabbitmq.ErrTooLarge)
	}
	return p.fakePub.Publish(ctx, queue, m)
}

func (p *sizedPub) PublishBatch(ctx context.Context, items []rabbitmq.Outgoing) []error {
	errs := make([]error, len(items))
	for i, it := range items {
		errs[i] = p.Publish(ctx, it.Queue, it.Msg)
	}
	return errs
}

// A result over the broker's max_message_size used to be handed back, and came back, forever.
// It fails to the output stage when the failure fits, and goes to the dead-letter queue when even
// that is too large; the delivery is acked either way.
func TestResultOverTheSizeLimitEnds(t *testing.T) {
	const limit = 4096
	page := func(image []byte) (*job, *countAck) {
		req, err := message.NewRequest("p.png", image, []string{"s", "next", "out"}, 0, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := message.Encode(req)
		ack := &countAck{}
		return &job{ack: ack, body: body, req: req}, ack
	}
	tests := []struct {
		name      string
		image     []byte
		wantQueue string // where the page went
		wantFail  bool
	}{
		{"the result is too large, its failure fits", []byte("img"), "out", true},
		{"the result and its failure are too large", bytes.Repeat([]byte{1}, limit-200), "s.dead", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pub := &sizedPub{limit: limit}
			cnt := &counters{}
			f := &forwarder{stage: "s", hostID: "h", version: "v", pub: pub, counters: cnt, log: testLog(t),
				dead: &deadLetters{stage: "s", container: "c", pub: pub, counters: cnt, clock: newFakeClock(time.Unix(0, 0)), log: testLog(t)}}
			j, ack := page(tc.image)
			big := function.Output{Files: []function.File{{Name: "p.txt", Content: bytes.Repeat([]byte("x"), 2*limit)}}}
			f.forward([]result{{job: j, out: big, start: time.Unix(1, 0), end: time.Unix(2, 0)}})
			if ack.acks != 1 || ack.nacks != 0 {
				t.Fatalf("acks %d, nacks %d: the delivery must be answered, not handed back", ack.acks, ack.nacks)
			}
			if len(pub.sent) != 1 || pub.sent[0].queue != tc.wantQueue {
				t.Fatalf("sent %d messages, want one to %s", len(pub.sent), tc.wantQueue)
			}
			m := pub.sent[0].msg
			if tc.wantFail {
				req, err := message.Decode(m.Body)
				if err != nil || !message.Failed(req) || !strings.Contains(message.FailureText(req), "max_message_size") {
					t.Errorf("failure %v, %v", req, err)
				}
				return
			}
			if m.Headers[HeaderReason] != reasonTooLarge || !bytes.Equal(m.Body, j.body) {
				t.Errorf("dead letter reason %v, body as received %v", m.Headers[HeaderReason], bytes.Equal(m.Body, j.body))
			}
		})
	}
}

// A redelivered message whose delivery count makes it too large to requeue goes to the
// dead-letter queue instead of being handed back again and again.
func TestRequeueOverTheSizeLimitIsDeadLettered(t *testing.T) {
	req, err := message.NewRequest("p.png", []byte("img"), []string{"s", "out"}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := message.Encode(req)
	pub := &sizedPub{limit: len(body)} // the count's extra bytes do not fit
	cnt := &counters{}
	clk := newFakeClock(time.Unix(0, 0))
	c := newConsumer("s", 3, 8, nil, pub, &deadLetters{stage: "s", container: "c", pub: pub, counters: cnt, clock: clk, log: testLog(t)},
		fakeSuspects{}, cnt, clk, testLog(t))
	ack := &countAck{}
	j, err := c.triage(incoming{ack: ack, body: body, redelivered: true})
	if err != nil || j != nil {
		t.Fatalf("job %v, err %v", j, err)
	}
	if ack.acks != 1 || len(pub.sent) != 1 || pub.sent[0].queue != "s.dead" || pub.sent[0].msg.Headers[HeaderReason] != reasonTooLarge {
		t.Errorf("acks %d, sent %+v", ack.acks, pub.sent)
	}
}
