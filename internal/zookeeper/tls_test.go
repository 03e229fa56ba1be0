package zookeeper

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/testenv"
)

func TestTLSConnection(t *testing.T) {
	addr := testenv.ZooKeeperTLS(t)
	ctx := context.Background()
	st, err := Dial(ctx, Config{Servers: []string{addr}, Root: "/" + testenv.Unique("tls") + "/pero", TLS: testenv.TLSConfig(t)})
	if err != nil {
		t.Fatalf("Dial over TLS: %v", err)
	}
	defer st.Close()
	if err := st.AddServer(ctx, MQServers, "127.0.0.1:5671"); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Servers(ctx, MQServers); err != nil || len(got) != 1 {
		t.Fatalf("Servers = %v, %v", got, err)
	}
	_ = st.Conn().Delete(st.Root()+"/worker/config/mq_servers/127.0.0.1:5671", -1)
}

func TestTLSRejectsUnknownCA(t *testing.T) {
	addr := testenv.ZooKeeperTLS(t)
	start := time.Now()
	_, err := Dial(context.Background(), Config{Servers: []string{addr}, ConnectTimeout: 3 * time.Second,
		TLS: &tls.Config{MinVersion: tls.VersionTLS12}}) // system roots do not include the test CA
	if err == nil {
		t.Fatal("Dial trusted a server signed by an unknown CA")
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("error does not say why: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
}
