package rabbitmq

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/testenv"
)

func TestTLSPublishConsume(t *testing.T) {
	addr := testenv.AMQPSAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := testenv.TLSConfig(t)
	cfg.ServerName = "localhost"
	conn, err := Dial(ctx, Config{Addrs: []string{addr}, User: testenv.DefaultMQUser, Password: testenv.DefaultMQPassword, TLS: cfg})
	if err != nil {
		t.Fatalf("Dial over TLS: %v", err)
	}
	defer conn.Close()
	q := testenv.Unique("tls")
	if err := conn.DeclareStage(ctx, q); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = conn.DeleteQueue(context.Background(), q, false)
		_ = conn.DeleteQueue(context.Background(), DeadLetterQueue(q), false)
	}()
	pub, err := conn.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(ctx, q, Message{Body: []byte("over tls")}); err != nil {
		t.Fatal(err)
	}
	cons, err := conn.Consume(ctx, q, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	select {
	case d := <-cons.Deliveries():
		if string(d.Body) != "over tls" {
			t.Errorf("body %q", d.Body)
		}
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("no delivery over TLS")
	}
}

func TestTLSRejectsWrongHostname(t *testing.T) {
	addr := testenv.AMQPSAddr(t)
	cfg := testenv.TLSConfig(t)
	cfg.ServerName = "not-the-broker.example"
	_, err := Dial(context.Background(), Config{Addrs: []string{addr}, User: testenv.DefaultMQUser,
		Password: testenv.DefaultMQPassword, TLS: cfg, ConnectTimeout: 5 * time.Second})
	if err == nil {
		t.Fatal("Dial accepted a certificate for another name")
	}
	if !strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), testenv.DefaultMQPassword) {
		t.Errorf("error: %v", err)
	}
}
