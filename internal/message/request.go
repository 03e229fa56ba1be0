package message

import (
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// StageLog status strings, as the original writes them.
const (
	LogOK     = "OK"
	LogFailed = "Failed"
)

// Errors returned by Decode and the stage helpers; callers branch on them with errors.Is.
var (
	ErrMalformed  = errors.New("malformed message")
	ErrNoStages   = errors.New("message has no processing stages")
	ErrNoInput    = errors.New("message has no input image (results[0])")
	ErrWrongStage = errors.New("message is not addressed to this stage")
	ErrLastStage  = errors.New("message is already at its output stage")
)

// NewUUID returns a random (version 4) UUID in its canonical text form.
func NewUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// NewRequest builds the request a publisher sends for one page: results[0] is the image,
// processing_stages the route ending with the output queue.
func NewRequest(name string, image []byte, stages []string, priority int32, now time.Time) (*ProcessingRequest, error) {
	if len(stages) == 0 {
		return nil, ErrNoStages
	}
	for i, s := range stages {
		if s == "" {
			return nil, fmt.Errorf("stage %d: empty stage name", i)
		}
	}
	id := NewUUID()
	return &ProcessingRequest{
		Uuid:             id,
		PageUuid:         id,
		Priority:         priority,
		StartTime:        timestamppb.New(now),
		ProcessingStages: append([]string(nil), stages...),
		Results:          []*Data{{Name: name, Content: image, Size: int64(len(image))}},
	}, nil
}

// Decode parses a message body and checks what every stage relies on: at least one stage
// to go to and an input image. Errors wrap ErrMalformed, ErrNoStages or ErrNoInput.
func Decode(body []byte) (*ProcessingRequest, error) {
	var r ProcessingRequest
	if err := proto.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(r.GetProcessingStages()) == 0 {
		return &r, ErrNoStages
	}
	if len(r.GetResults()) == 0 {
		return &r, ErrNoInput
	}
	return &r, nil
}

// Encode serialises a request. Field order is deterministic so equal requests give equal bytes.
func Encode(r *ProcessingRequest) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode request %s: %w", r.GetUuid(), err)
	}
	return b, nil
}

// CurrentStage is the stage the request is addressed to ("" when it has none).
func CurrentStage(r *ProcessingRequest) string {
	if len(r.GetProcessingStages()) == 0 {
		return ""
	}
	return r.ProcessingStages[0]
}

// OutputStage is the last stage of the route: where results and failures end.
func OutputStage(r *ProcessingRequest) string {
	s := r.GetProcessingStages()
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// Input returns results[0], the page image.
func Input(r *ProcessingRequest) *Data {
	if len(r.GetResults()) == 0 {
		return nil
	}
	return r.Results[0]
}

// Result returns the payload called name, or nil.
func Result(r *ProcessingRequest, name string) *Data {
	for _, d := range r.GetResults() {
		if d.GetName() == name {
			return d
		}
	}
	return nil
}

// SetResult adds a payload or replaces the one with the same name (a retried stage must
// not leave two copies).
func SetResult(r *ProcessingRequest, d *Data) {
	for i, old := range r.Results {
		if i > 0 && old.GetName() == d.GetName() {
			r.Results[i] = d
			return
		}
	}
	r.Results = append(r.Results, d)
}

// Advance records a successful stage and pops it from the route. It returns the stage to
// publish to next. When that is the output stage the request becomes terminal (STATUS_OK).
func Advance(r *ProcessingRequest, stage string, log *StageLog) (string, error) {
	if CurrentStage(r) != stage {
		return "", fmt.Errorf("%w: want %q, message is at %q", ErrWrongStage, stage, CurrentStage(r))
	}
	if len(r.ProcessingStages) < 2 {
		return "", ErrLastStage
	}
	log.Stage = stage
	if log.Status == "" {
		log.Status = LogOK
	}
	r.Logs = append(r.Logs, log)
	r.ProcessingStages = r.ProcessingStages[1:]
	r.Attempts = 0
	if len(r.ProcessingStages) == 1 && r.Status == Status_STATUS_UNSPECIFIED {
		r.Status = Status_STATUS_OK
	}
	return r.ProcessingStages[0], nil
}

// Fail records a failed stage and routes the request straight to its output stage, as the
// original does, with STATUS_FAILED and the error text. It returns the output stage.
func Fail(r *ProcessingRequest, stage string, log *StageLog, cause error) (string, error) {
	if len(r.ProcessingStages) == 0 {
		return "", ErrNoStages
	}
	msg := "unknown error"
	if cause != nil {
		msg = cause.Error()
	}
	log.Stage = stage
	log.Status = LogFailed
	log.Error = msg
	if log.Log == "" {
		log.Log = msg
	}
	r.Logs = append(r.Logs, log)
	out := OutputStage(r)
	r.ProcessingStages = []string{out}
	r.Status = Status_STATUS_FAILED
	r.Error = msg
	r.FailedStage = stage
	r.Attempts = 0
	return out, nil
}

// Failed reports whether the request failed. Messages from original workers carry no
// status, so a "Failed" StageLog counts too.
func Failed(r *ProcessingRequest) bool {
	if r.GetStatus() == Status_STATUS_FAILED {
		return true
	}
	for _, l := range r.GetLogs() {
		if l.GetStatus() == LogFailed {
			return true
		}
	}
	return false
}

// FailureText is the error of a failed request, falling back to the failed StageLog's text.
func FailureText(r *ProcessingRequest) string {
	if r.GetError() != "" {
		return r.GetError()
	}
	for _, l := range r.GetLogs() {
		if l.GetStatus() == LogFailed {
			if l.GetError() != "" {
				return l.GetError()
			}
			return l.GetLog()
		}
	}
	return ""
}
