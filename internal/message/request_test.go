package message

import (
	"errors"
	"testing"
	"time"
)

func TestAdvanceAndFail(t *testing.T) {
	now := time.Unix(1700000000, 0)
	tests := []struct {
		name       string
		stages     []string
		fail       bool
		wantNext   string
		wantStages []string
		wantStatus Status
	}{
		{"middle stage", []string{"detect", "recognize", "out"}, false, "recognize", []string{"recognize", "out"}, Status_STATUS_UNSPECIFIED},
		{"last working stage", []string{"recognize", "out"}, false, "out", []string{"out"}, Status_STATUS_OK},
		{"failure skips to output", []string{"detect", "recognize", "out"}, true, "out", []string{"out"}, Status_STATUS_FAILED},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRequest("p.png", []byte("x"), tc.stages, 0, now)
			if err != nil {
				t.Fatal(err)
			}
			r.Attempts = 3
			var next string
			if tc.fail {
				next, err = Fail(r, tc.stages[0], &StageLog{}, errors.New("bad image"))
			} else {
				next, err = Advance(r, tc.stages[0], &StageLog{})
			}
			if err != nil {
				t.Fatal(err)
			}
			if next != tc.wantNext || len(r.ProcessingStages) != len(tc.wantStages) || r.Status != tc.wantStatus {
				t.Errorf("next=%q stages=%v status=%v", next, r.ProcessingStages, r.Status)
			}
			if r.Attempts != 0 {
				t.Errorf("attempts must reset when the request moves on")
			}
			if len(r.Logs) != 1 || r.Logs[0].Stage != tc.stages[0] {
				t.Errorf("logs = %v", r.Logs)
			}
			if tc.fail && (FailureText(r) != "bad image" || r.FailedStage != tc.stages[0] || !Failed(r)) {
				t.Errorf("failure not recorded: %+v", r)
			}
		})
	}
}

func TestAdvanceErrors(t *testing.T) {
	r, _ := NewRequest("p.png", []byte("x"), []string{"a", "out"}, 0, time.Now())
	if _, err := Advance(r, "b", &StageLog{}); !errors.Is(err, ErrWrongStage) {
		t.Errorf("wrong stage: %v", err)
	}
	r.ProcessingStages = []string{"out"}
	if _, err := Advance(r, "out", &StageLog{}); !errors.Is(err, ErrLastStage) {
		t.Errorf("last stage: %v", err)
	}
	if _, err := NewRequest("p", nil, nil, 0, time.Now()); !errors.Is(err, ErrNoStages) {
		t.Errorf("no stages: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	if _, err := Decode([]byte{0xff, 0xff, 0xff}); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage: %v", err)
	}
	noStages, _ := Encode(&ProcessingRequest{Uuid: "x", Results: []*Data{{Name: "a"}}})
	if _, err := Decode(noStages); !errors.Is(err, ErrNoStages) {
		t.Errorf("no stages: %v", err)
	}
	noInput, _ := Encode(&ProcessingRequest{Uuid: "x", ProcessingStages: []string{"out"}})
	if _, err := Decode(noInput); !errors.Is(err, ErrNoInput) {
		t.Errorf("no input: %v", err)
	}
}

func TestSetResultReplaces(t *testing.T) {
	r, _ := NewRequest("p.png", []byte("x"), []string{"a", "out"}, 0, time.Now())
	SetResult(r, &Data{Name: "p_page.xml", Content: []byte("1")})
	SetResult(r, &Data{Name: "p_page.xml", Content: []byte("2")})
	if len(r.Results) != 2 || string(Result(r, "p_page.xml").Content) != "2" {
		t.Errorf("results = %v", r.Results)
	}
	// The input image is never replaced, even by a same-named output.
	SetResult(r, &Data{Name: "p.png", Content: []byte("y")})
	if string(Input(r).Content) != "x" {
		t.Errorf("input replaced")
	}
}

func TestNewUUID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		u := NewUUID()
		if len(u) != 36 || u[14] != '4' || seen[u] {
			t.Fatalf("bad or repeated uuid %q", u)
		}
		seen[u] = true
	}
}

func FuzzDecode(f *testing.F) {
	r, _ := NewRequest("p.png", []byte("img"), []string{"a", "out"}, 1, time.Unix(1, 0))
	b, _ := Encode(r)
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0x2a, 0x00})
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := Decode(body)
		if err != nil {
			return
		}
		// Whatever decodes must be routable and re-encodable.
		if CurrentStage(r) == "" || Input(r) == nil {
			t.Fatalf("decoded without stage or input")
		}
		if _, err := Encode(r); err != nil {
			t.Fatal(err)
		}
	})
}
