package reliability

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pero-worker/pero-worker/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	stopServices()
	removeImages()
	removeBinaries()
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait")); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// services are this package's own RabbitMQ, ZooKeeper and FTP server: scripts/services.sh run
// with other ports, another RabbitMQ node name and a temporary state directory. The passwords
// are random and distinctive, so that any log line that shows one is caught.
type services struct {
	dir string
	// vars are the script's variables: ports, node, directory and credentials.
	vars []string

	mqPort, mqTLSPort, mgmtPort, zkPort, zkTLSPort, ftpPort int
	user                                                    string
	mqPassword, ftpPassword                                 string
	vhost                                                   string
}

var (
	svcOnce sync.Once
	svc     *services
	svcErr  error
)

// statePrefix names the state directories in the temporary directory; stale ones (their test
// process died before stopping them) are stopped and removed by the next run.
const statePrefix = "pero-reliability-"

// need returns the private services, starting them on first use. Without Docker or the
// services' packages the test is skipped (failed in CI).
func need(t *testing.T) *services {
	t.Helper()
	if testing.Short() {
		t.Skip("reliability suite: starts its own services and runs containers")
	}
	testenv.Docker(t)
	svcOnce.Do(func() {
		reapStale()
		start := time.Now()
		var wg sync.WaitGroup
		wg.Go(prebuild)
		svc, svcErr = startServices()
		wg.Wait()
		if svcErr == nil {
			fmt.Fprintf(os.Stderr, "reliability: private services up in %s (%s)\n",
				time.Since(start).Round(100*time.Millisecond), svc.dir)
		}
	})
	if svcErr != nil {
		testenv.Missing(t, "private RabbitMQ, ZooKeeper and FTP", svcErr.Error())
	}
	return svc
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freeBlock finds 100 consecutive ports below the kernel's ephemeral range (so that no outgoing
// connection holds one when a service binds it) that are free now, away from the shared
// services' ports.
func freeBlock() (int, error) {
	for range 50 {
		n, err := rand.Int(rand.Reader, big.NewInt(110))
		if err != nil {
			return 0, err
		}
		base := 20000 + 100*int(n.Int64()) // 20000..30900
		if base == 25600 || base == 30000 {
			continue // the shared RabbitMQ's distribution port, the shared FTP's passive ports
		}
		free := true
		for p := base; p < base+10 && free; p++ {
			ln, err := net.Listen("tcp", ":"+strconv.Itoa(p))
			if err != nil {
				free = false
				continue
			}
			_ = ln.Close()
		}
		if free {
			return base, nil
		}
	}
	return 0, errors.New("no free block of ports found")
}

func startServices() (*services, error) {
	dir, err := os.MkdirTemp("", statePrefix)
	if err != nil {
		return nil, err
	}
	// The FTP server's home lives inside: its virtual user must be able to reach it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	base, err := freeBlock()
	if err != nil {
		return nil, err
	}
	s := &services{
		dir:    dir,
		mqPort: base, mqTLSPort: base + 1, mgmtPort: base + 2, zkPort: base + 4, zkTLSPort: base + 5, ftpPort: base + 6,
		user:        "pero",
		mqPassword:  "mq-pw-" + randomHex(8),
		ftpPassword: "ftp-pw-" + randomHex(8),
		vhost:       "pero",
	}
	s.vars = []string{
		"PERO_SERVICES_DIR=" + dir,
		"PERO_SERVICES_MQ_NODE=perorel" + strconv.Itoa(base) + "@localhost",
		"PERO_SERVICES_MQ_PORT=" + strconv.Itoa(s.mqPort),
		"PERO_SERVICES_MQ_TLS_PORT=" + strconv.Itoa(s.mqTLSPort),
		"PERO_SERVICES_MQ_MGMT_PORT=" + strconv.Itoa(s.mgmtPort),
		"PERO_SERVICES_MQ_DIST_PORT=" + strconv.Itoa(base+3),
		"PERO_SERVICES_MQ_MAX_MESSAGE_SIZE=" + strconv.Itoa(maxMessageSize),
		"PERO_SERVICES_ZK_PORT=" + strconv.Itoa(s.zkPort),
		"PERO_SERVICES_ZK_TLS_PORT=" + strconv.Itoa(s.zkTLSPort),
		"PERO_SERVICES_FTP_PORT=" + strconv.Itoa(s.ftpPort),
		"PERO_SERVICES_FTP_PASSIVE=" + strconv.Itoa(base+50) + ":" + strconv.Itoa(base+99),
		"PERO_MQ_USER=" + s.user, "PERO_MQ_PASSWORD=" + s.mqPassword, "PERO_MQ_VHOST=" + s.vhost,
		"PERO_FTP_USER=" + s.user, "PERO_FTP_PASSWORD=" + s.ftpPassword,
	}
	// What reapStale needs to stop them should this process die first.
	owner := fmt.Sprintf("%d\n%s\n", os.Getpid(), strings.Join(s.vars, "\n"))
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(owner), 0o600); err != nil {
		return nil, err
	}
	// The FTP server first: it makes the TLS material the other two read. Then the slow
	// RabbitMQ beside ZooKeeper.
	err = s.script("start", "ftp")
	if err == nil {
		err = errors.Join(s.together("start", "rabbitmq", "zookeeper")...)
	}
	if err != nil {
		_ = s.script("stop")
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// together runs `scripts/services.sh ACTION SERVICE` for each service at once.
func (s *services) together(action string, services ...string) []error {
	errs := make([]error, len(services))
	var wg sync.WaitGroup
	for i, name := range services {
		wg.Go(func() { errs[i] = s.script(action, name) })
	}
	wg.Wait()
	return errs
}

// maxMessageSize is the private broker's max_message_size, small so that an oversized message
// costs little.
const maxMessageSize = 4 << 20

// script runs scripts/services.sh with the private services' variables.
func (s *services) script(args ...string) error {
	return runScript(s.vars, args...)
}

func runScript(vars []string, args ...string) error {
	cmd := exec.Command(filepath.Join(repoRoot(), "scripts", "services.sh"), args...)
	cmd.Env = append(os.Environ(), vars...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("scripts/services.sh %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return nil
}

// do runs `scripts/services.sh ACTION SERVICE` ("stop" or "start"; "rabbitmq", "zookeeper" or
// "ftp"). A service started again keeps its data: queues, messages, znodes, files.
func (s *services) do(t *testing.T, action, service string) {
	t.Helper()
	start := time.Now()
	if err := s.script(action, service); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s %s: %s", action, service, time.Since(start).Round(100*time.Millisecond))
}

func (s *services) zkAddr() string   { return "127.0.0.1:" + strconv.Itoa(s.zkPort) }
func (s *services) mqAddr() string   { return "127.0.0.1:" + strconv.Itoa(s.mqPort) }
func (s *services) mgmtAddr() string { return "127.0.0.1:" + strconv.Itoa(s.mgmtPort) }
func (s *services) ftpAddr() string  { return "127.0.0.1:" + strconv.Itoa(s.ftpPort) }

// secrets are the strings no log or error may show.
func (s *services) secrets() []string { return []string{s.mqPassword, s.ftpPassword} }

func stopServices() {
	if svc == nil {
		return
	}
	if err := errors.Join(svc.together("stop", "rabbitmq", "zookeeper", "ftp")...); err != nil {
		fmt.Fprintf(os.Stderr, "reliability: %v\n", err)
		return
	}
	_ = os.RemoveAll(svc.dir)
}

// reapStale stops the services of earlier runs whose test process is gone.
func reapStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), statePrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner"))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		pid, err := strconv.Atoi(lines[0])
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // its owner still runs
		}
		if err := runScript(lines[1:], "stop"); err == nil {
			_ = os.RemoveAll(d)
		}
	}
}
