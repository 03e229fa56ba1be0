package rabbitmq

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/testenv"
)

func TestManagementQueueStats(t *testing.T) {
	c := dialTest(t)
	stage := testStage(t, c)
	ctx := testCtx(t)
	m := testManagement(t)
	publishN(t, c, stage, 3)

	cons, err := c.Consume(ctx, stage, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	d := receive(t, cons)
	// The management figures refresh every few seconds.
	var st QueueStats
	testenv.Eventually(t, 30*time.Second, "1 unacked in the management API", func() bool {
		st, err = m.QueueStats(ctx, stage)
		if err != nil {
			t.Fatalf("QueueStats: %v", err)
		}
		return st.Unacked == 1 && st.Ready == 2 && st.Consumers == 1
	})
	if st.Name != stage {
		t.Errorf("Name = %q", st.Name)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}

	list, err := m.ListQueues(ctx)
	if err != nil {
		t.Fatalf("ListQueues: %v", err)
	}
	found := 0
	for _, q := range list {
		if q.Name == stage || q.Name == DeadLetterQueue(stage) {
			found++
		}
	}
	if found != 2 {
		t.Errorf("ListQueues lacks the stage queues (found %d of 2 in %d)", found, len(list))
	}

	if _, err := m.QueueStats(ctx, testenv.Unique("rmq-missing")); !errors.Is(err, ErrQueueNotFound) {
		t.Errorf("QueueStats of a missing queue: %v, want ErrQueueNotFound", err)
	}
}

func TestManagementWrongPassword(t *testing.T) {
	user, _ := credentials(t)
	const wrong = "n0t-the-Pa55word"
	m := NewManagement(testenv.ManagementURL(t), user, wrong, testVHost(t), nil)
	t.Cleanup(closeIdleHTTP)
	_, err := m.QueueStats(testCtx(t), "anything")
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("QueueStats with a wrong password: %v, want ErrAuth", err)
	}
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("error shows the password: %v", err)
	}
}

func TestManagementCredentialsInURL(t *testing.T) {
	var gotUser, gotPass, gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotUser, gotPass, _ = r.BasicAuth()
		gotPath = r.URL.EscapedPath()
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte("short and stout"))
	}))
	defer srv.Close()
	base := strings.Replace(srv.URL, "http://", "http://admin:s3cret@", 1) + "/"
	m := NewManagement(base, "", "", "/", srv.Client())
	_, err := m.QueueStats(testCtx(t), "a/b")
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "418") {
		t.Fatalf("error = %v", err)
	}
	if gotUser != "admin" || gotPass != "s3cret" {
		t.Errorf("basic auth = %q %q", gotUser, gotPass)
	}
	if gotPath != "/api/queues/%2F/a%2Fb" {
		t.Errorf("path = %q", gotPath)
	}
	if strings.Contains(m.String(), "s3cret") {
		t.Errorf("String() = %q", m.String())
	}
}
