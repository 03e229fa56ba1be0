package reliability

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/message"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
	"github.com/pero-worker/pero-worker/runner"
)

// noopStage creates a stage whose containers pass pages through, at most max at once.
func (s *system) noopStage(batch, max int) string {
	name := testenv.Unique("noop")
	s.stage(zookeeper.Stage{Name: name, Settings: zookeeper.Settings{Function: "noop", Image: s.image, BatchSize: batch,
		MaxContainers: max, IdleTimeout: zookeeper.Duration(2 * time.Second)}})
	return name
}

// encode builds a request for route with the given input and returns its body and uuid.
func encode(t *testing.T, name string, image []byte, route ...string) ([]byte, string) {
	t.Helper()
	req, err := message.NewRequest(name, image, route, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := message.Encode(req)
	if err != nil {
		t.Fatal(err)
	}
	return b, req.GetUuid()
}

// TestBadInputFromARawPublisher: what a publisher that skips the CLI's checks can send to a stage
// served by watchdog-launched containers. Every message ends in the output queue (as a result or
// an explicit failure) or in the stage's dead-letter queue with its reason; nothing crashes the
// runner, nothing is redelivered in a loop, and the good pages sent among them go through.
func TestBadInputFromARawPublisher(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	out := s.output()
	stage := s.noopStage(4, 1)
	wd := s.watchdog("wd-a")

	good, goodID := encode(t, "good.png", []byte("img"), stage, out)
	notImage, notImageID := encode(t, "notes.png", []byte("%PDF-1.4 this is not an image"), stage, out)
	unknownNext, unknownNextID := encode(t, "unknown-next.png", []byte("img"), stage, "no-such-stage-x", out)
	unknownOut, unknownOutID := encode(t, "unknown-out.png", []byte("img"), stage, "no-such-stage-y")
	endsHere, endsHereID := encode(t, "ends-here.png", []byte("img"), stage)
	other, otherID := encode(t, "other.png", []byte("img"), "some-other-stage", out)
	emptyRoute, err := message.Encode(&message.ProcessingRequest{Uuid: message.NewUUID(),
		Results: []*message.Data{{Name: "empty-route.png", Content: []byte("img")}}})
	if err != nil {
		t.Fatal(err)
	}
	noInput, err := message.Encode(&message.ProcessingRequest{Uuid: message.NewUUID(), ProcessingStages: []string{stage, out}})
	if err != nil {
		t.Fatal(err)
	}
	// Just under the broker's limit: the result, a StageLog longer, is over it.
	growing, growingID := encode(t, "growing.png", nil, stage, out)
	growing, growingID = encode(t, "growing.png", bytes.Repeat([]byte{7}, maxMessageSize-len(growing)-16), stage, out)

	s.publishRaw(stage, good, []byte("\xff\xfe not a protobuf at all"), good[:len(good)/2], emptyRoute, noInput,
		notImage, unknownNext, unknownOut, endsHere, other, growing)
	ids := []string{goodID, notImageID, unknownNextID, unknownOutID, endsHereID, otherID, growingID}

	// Over the broker's limit: refused at the door, so the publisher knows; nothing is queued.
	huge, _ := encode(t, "huge.png", bytes.Repeat([]byte{7}, maxMessageSize+1), stage, out)
	pub, err := s.conn().NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	err = pub.Publish(ctxFor(t, 30*time.Second), stage, rabbitmq.Message{Body: huge})
	_ = pub.Close()
	if err == nil {
		t.Errorf("a message over the broker's max_message_size was accepted")
	} else {
		t.Logf("oversized publish refused: %v", err)
	}

	acc := s.settle(ids, out, []string{stage}, 0, 90*time.Second)
	// The good pages, and a payload the noop stage does not look at, go through.
	for _, id := range []string{goodID, notImageID} {
		if c := acc.out[id]; len(c) != 1 || message.Failed(c[0]) {
			t.Errorf("page %s: %d copies in the output, failed %v", id, len(c), len(c) == 1 && message.Failed(c[0]))
		}
	}
	// An unknown next stage fails the page to the output stage, saying why.
	if c := acc.out[unknownNextID]; len(c) != 1 || !message.Failed(c[0]) ||
		!strings.Contains(message.FailureText(c[0]), "no-such-stage-x") {
		t.Errorf("unknown next stage: %v", c)
	}
	// The others are dead letters with their reason.
	reason := func(id string) string {
		l := acc.dead[id]
		if len(l) != 1 {
			return fmt.Sprintf("%d dead letters", len(l))
		}
		return fmt.Sprint(l[0].headers[runner.HeaderReason])
	}
	for id, want := range map[string]string{unknownOutID: "unroutable", endsHereID: "no-next-stage",
		otherID: "wrong-stage", growingID: "too-large"} {
		if got := reason(id); got != want {
			t.Errorf("dead letter %s: reason %s, want %s", id, got, want)
		}
	}
	malformed := 0
	for _, l := range acc.undecodable {
		if l.headers[runner.HeaderReason] == "malformed" && l.headers[runner.HeaderError] != "" {
			malformed++
		}
	}
	if malformed != 4 || len(acc.undecodable) != 4 {
		t.Errorf("%d malformed dead letters of %d undecodable, want 4", malformed, len(acc.undecodable))
	}
	// Nothing looped: no container failed, none was launched again and again.
	if l := wd.lines("container failed"); len(l) > 0 {
		t.Errorf("containers failed: %q", l)
	}
}
