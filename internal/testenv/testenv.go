// Package testenv finds the real services the integration tests run against. With CI=true a
// missing service fails the test; elsewhere the test is skipped with a one-line reason.
package testenv

import (
	"cmp"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// Development defaults, the same as scripts/services.sh.
const (
	DefaultAMQPURL     = "amqp://pero:pero-dev-password@127.0.0.1:5672/pero"
	DefaultMgmtURL     = "http://127.0.0.1:15672"
	DefaultZooKeeper   = "127.0.0.1:2181"
	DefaultFTPAddr     = "127.0.0.1:2121"
	DefaultFTPUser     = "pero"
	DefaultFTPPassword = "pero-dev-password"
	DefaultMQUser      = "pero"
	DefaultMQPassword  = "pero-dev-password"
	// TLS endpoints of scripts/services.sh, served with the test CA in TLSDir.
	DefaultAMQPSAddr    = "127.0.0.1:5671"
	DefaultZooKeeperTLS = "127.0.0.1:2281"
)

// InCI reports whether the tests run in CI, where missing services are failures.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "0" && v != "false"
}

// Missing fails (CI) or skips (elsewhere) the test because a service is not there.
func Missing(t testing.TB, service, why string) {
	t.Helper()
	msg := service + " not available (" + why + "); start it with `make services`"
	if InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func reachable(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// AMQPURL returns the RabbitMQ URL (PERO_TEST_AMQP_URL) after checking the broker listens.
func AMQPURL(t testing.TB) string {
	t.Helper()
	u := cmp.Or(os.Getenv("PERO_TEST_AMQP_URL"), DefaultAMQPURL)
	host := u[strings.LastIndex(u, "@")+1:]
	if i := strings.Index(host, "/"); i >= 0 {
		host = host[:i]
	}
	if err := reachable(host); err != nil {
		Missing(t, "RabbitMQ", err.Error())
	}
	return u
}

// ManagementURL returns the RabbitMQ management API base URL (PERO_TEST_MGMT_URL).
func ManagementURL(t testing.TB) string {
	t.Helper()
	u := cmp.Or(os.Getenv("PERO_TEST_MGMT_URL"), DefaultMgmtURL)
	if err := reachable(strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")); err != nil {
		Missing(t, "RabbitMQ management", err.Error())
	}
	return u
}

// ZooKeeper returns the ZooKeeper address (PERO_TEST_ZOOKEEPER) after checking it listens.
func ZooKeeper(t testing.TB) string {
	t.Helper()
	a := cmp.Or(os.Getenv("PERO_TEST_ZOOKEEPER"), DefaultZooKeeper)
	if err := reachable(a); err != nil {
		Missing(t, "ZooKeeper", err.Error())
	}
	return a
}

// FTP returns the FTP server address and credentials (PERO_TEST_FTP_ADDR/_USER/_PASSWORD).
func FTP(t testing.TB) (addr, user, password string) {
	t.Helper()
	addr = cmp.Or(os.Getenv("PERO_TEST_FTP_ADDR"), DefaultFTPAddr)
	if err := reachable(addr); err != nil {
		Missing(t, "FTP server", err.Error())
	}
	return addr, cmp.Or(os.Getenv("PERO_TEST_FTP_USER"), DefaultFTPUser),
		cmp.Or(os.Getenv("PERO_TEST_FTP_PASSWORD"), DefaultFTPPassword)
}

// TLSDir is where scripts/services.sh keeps the test CA (ca.crt) and server certificate:
// PERO_TEST_TLS_DIR, else $PERO_SERVICES_DIR/tls, else .services/tls in the repository.
func TLSDir(t testing.TB) string {
	t.Helper()
	d := os.Getenv("PERO_TEST_TLS_DIR")
	if d == "" && os.Getenv("PERO_SERVICES_DIR") != "" {
		d = os.Getenv("PERO_SERVICES_DIR") + "/tls"
	}
	if d == "" {
		out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
		if err != nil {
			Missing(t, "test CA", "cannot find the repository root")
		}
		d = strings.TrimSpace(string(out)) + "/.services/tls"
	}
	if _, err := os.Stat(d + "/ca.crt"); err != nil {
		Missing(t, "test CA", err.Error())
	}
	return d
}

// Docker checks that the Docker engine answers.
func Docker(t testing.TB) {
	t.Helper()
	if err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").Run(); err != nil {
		Missing(t, "Docker engine", err.Error())
	}
}

// Unique returns prefix plus a random suffix, so parallel tests on shared services never collide.
func Unique(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// AMQPSAddr returns the broker's TLS address (PERO_TEST_AMQPS_ADDR) after checking it listens.
func AMQPSAddr(t testing.TB) string {
	t.Helper()
	a := cmp.Or(os.Getenv("PERO_TEST_AMQPS_ADDR"), DefaultAMQPSAddr)
	if err := reachable(a); err != nil {
		Missing(t, "RabbitMQ TLS listener", err.Error())
	}
	return a
}

// ZooKeeperTLS returns ZooKeeper's TLS address (PERO_TEST_ZOOKEEPER_TLS) after checking it listens.
func ZooKeeperTLS(t testing.TB) string {
	t.Helper()
	a := cmp.Or(os.Getenv("PERO_TEST_ZOOKEEPER_TLS"), DefaultZooKeeperTLS)
	if err := reachable(a); err != nil {
		Missing(t, "ZooKeeper TLS port", err.Error())
	}
	return a
}

// TLSConfig returns a client TLS configuration trusting the test CA.
func TLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(TLSDir(t) + "/ca.crt")
	if err != nil {
		Missing(t, "test CA", err.Error())
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("test CA holds no certificate")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// Eventually polls cond every 50 ms until it holds, failing the test when d passes first. It
// returns how long it waited.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// DeleteTree removes the znode p and everything below it, ignoring errors (test clean-up).
func DeleteTree(c *zk.Conn, p string) {
	kids, _, err := c.Children(p)
	if err != nil {
		return
	}
	for _, k := range kids {
		DeleteTree(c, p+"/"+k)
	}
	_ = c.Delete(p, -1)
}
