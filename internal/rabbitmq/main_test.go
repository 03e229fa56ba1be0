package rabbitmq

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pero-worker/pero-worker/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testCtx is a context that ends with the test or after a minute.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// dialTest connects to the test broker and closes the connection after the test.
func dialTest(t *testing.T) *Conn {
	t.Helper()
	c, err := Dial(testCtx(t), Config{URLs: []string{testenv.AMQPURL(t)}})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testStage declares a stage with a unique name and deletes both its queues after the test.
func testStage(t *testing.T, c *Conn) string {
	t.Helper()
	stage := testenv.Unique("rmq-test")
	if err := c.DeclareStage(testCtx(t), stage); err != nil {
		t.Fatalf("DeclareStage: %v", err)
	}
	t.Cleanup(func() { deleteQueues(t, stage, DeadLetterQueue(stage)) })
	return stage
}

// deleteQueues deletes queues on a connection of its own, so it works after the test's closed.
func deleteQueues(t *testing.T, queues ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, Config{URLs: []string{testenv.AMQPURL(t)}})
	if err != nil {
		t.Errorf("cleanup dial: %v", err)
		return
	}
	defer c.Close()
	for _, q := range queues {
		if err := c.DeleteQueue(ctx, q, false); err != nil {
			t.Errorf("cleanup delete %s: %v", q, err)
		}
	}
}

// credentials are the user and password of the test broker's URL.
func credentials(t *testing.T) (user, password string) {
	t.Helper()
	u, err := url.Parse(testenv.AMQPURL(t))
	if err != nil {
		t.Fatalf("test AMQP URL: %v", err)
	}
	p, _ := u.User.Password()
	return u.User.Username(), p
}

func testVHost(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(testenv.AMQPURL(t))
	if err != nil {
		t.Fatalf("test AMQP URL: %v", err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

func testManagement(t *testing.T) *Management {
	t.Helper()
	user, password := credentials(t)
	t.Cleanup(closeIdleHTTP)
	return NewManagement(testenv.ManagementURL(t), user, password, testVHost(t), nil)
}

func closeIdleHTTP() {
	if tr, ok := http.DefaultTransport.(*http.Transport); ok {
		tr.CloseIdleConnections()
	}
}

// mgmtCall calls the management API directly, for what the package itself does not offer.
func mgmtCall(t *testing.T, method, path string, out any) int {
	t.Helper()
	user, password := credentials(t)
	req, err := http.NewRequestWithContext(testCtx(t), method, testenv.ManagementURL(t)+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, password)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// receive waits for the next delivery.
func receive(t *testing.T, cons *Consumer) *Delivery {
	t.Helper()
	select {
	case d, ok := <-cons.Deliveries():
		if !ok {
			t.Fatalf("deliveries closed: %v", cons.Err())
		}
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery within 10s")
	}
	return nil
}
