package runner

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

func TestNewDefaults(t *testing.T) {
	cfg, err := New([]string{"PERO_STAGE=detect", "HOSTNAME=abc123"})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Stage: "detect", ZooKeeper: []string{DefaultZooKeeper}, ZKRoot: "/pero", MQVHost: "pero",
		CacheDir: DefaultCacheDir, CacheMaxBytes: DefaultCacheMaxBytes, ContainerID: "abc123", HostID: "abc123",
		LogLevel: slog.LevelInfo, LogFormat: "json", GracePeriod: DefaultGracePeriod, BatchWait: DefaultBatchWait,
		ConnectTimeout: DefaultConnectTimeout, StatsInterval: DefaultStatsInterval,
		Extract: ExtractLimits{MaxBytes: DefaultMaxExtractBytes, MaxRatio: DefaultMaxRatio, MaxFiles: DefaultMaxFiles},
	}
	want.MQ.User, want.MQ.Password, want.FTP.User = "guest", "guest", "pero"
	if cfg.Stage != want.Stage || strings.Join(cfg.ZooKeeper, ",") != DefaultZooKeeper || cfg.ZKRoot != want.ZKRoot ||
		cfg.MQVHost != want.MQVHost || cfg.CacheDir != want.CacheDir || cfg.CacheMaxBytes != want.CacheMaxBytes ||
		cfg.ContainerID != want.ContainerID || cfg.HostID != want.HostID || cfg.LogLevel != want.LogLevel ||
		cfg.LogFormat != want.LogFormat || cfg.GracePeriod != want.GracePeriod || cfg.BatchWait != want.BatchWait ||
		cfg.ConnectTimeout != want.ConnectTimeout || cfg.StatsInterval != want.StatsInterval || cfg.Extract != want.Extract ||
		cfg.MQ != want.MQ || cfg.FTP != want.FTP || cfg.MQTLS != nil || cfg.FTPTLS != nil || cfg.Override != (Override{}) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestNewValues(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := New([]string{
		"PERO_STAGE=ocr", "PERO_ZOOKEEPER= zk1:2181, zk2:2181 ", "PERO_ZK_ROOT=/t/pero", "PERO_ZK_AUTH=u:p",
		"PERO_MQ_USER=mq", "PERO_MQ_PASSWORD_FILE=" + pw, "PERO_MQ_VHOST=v", "PERO_FTP_USER=f", "PERO_FTP_PASSWORD=fp",
		"PERO_CACHE_DIR=/c", "PERO_CACHE_MAX_BYTES=2GiB", "PERO_MODEL_MAX_BYTES=500M", "PERO_MODEL_MAX_RATIO=10",
		"PERO_MODEL_MAX_FILES=7", "PERO_CONTAINER_ID=c1", "HOSTNAME=h", "PERO_HOST_ID=host",
		"LOG_LEVEL=debug", "LOG_FORMAT=TEXT", "PERO_GRACE_PERIOD=3s", "PERO_BATCH_WAIT=0s", "PERO_CONNECT_TIMEOUT=1m",
		"PERO_STATS_INTERVAL=250ms", "PERO_FUNCTION=noop", "PERO_BATCH_SIZE=32", "PERO_BATCH_TIMEOUT=1m",
		"PERO_IDLE_TIMEOUT=5s", "PERO_MAX_LIFETIME=2h", "PERO_MAX_BATCHES=10", "PERO_MAX_DELIVERIES=5",
		"PERO_BATCH_SIZE=16", // the last one wins
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.ZooKeeper, ","); got != "zk1:2181,zk2:2181" {
		t.Errorf("ZooKeeper = %q", got)
	}
	if cfg.ZKRoot != "/t/pero" || cfg.ZKAuth != "u:p" || cfg.MQ.User != "mq" || cfg.MQ.Password != "s3cret" ||
		cfg.MQVHost != "v" || cfg.FTP.User != "f" || cfg.FTP.Password != "fp" || cfg.CacheDir != "/c" ||
		cfg.CacheMaxBytes != 2<<30 || cfg.Extract != (ExtractLimits{MaxBytes: 500e6, MaxRatio: 10, MaxFiles: 7}) ||
		cfg.ContainerID != "c1" || cfg.HostID != "host" || cfg.LogLevel != slog.LevelDebug || cfg.LogFormat != "text" ||
		cfg.GracePeriod != 3*time.Second || cfg.BatchWait != 0 || cfg.ConnectTimeout != time.Minute ||
		cfg.StatsInterval != 250*time.Millisecond {
		t.Errorf("got %+v", cfg)
	}
	wantO := Override{Function: "noop", BatchSize: 16, BatchTimeout: time.Minute, IdleTimeout: 5 * time.Second,
		MaxLifetime: 2 * time.Hour, MaxBatches: 10, MaxDeliveries: 5}
	if cfg.Override != wantO {
		t.Errorf("Override = %+v, want %+v", cfg.Override, wantO)
	}
	s, err := cfg.Settings(zookeeper.Settings{Function: "ocr", BatchSize: 4, MaxContainers: 3})
	if err != nil {
		t.Fatal(err)
	}
	if s.Function != "noop" || s.BatchSize != 16 || s.MaxContainers != 3 || s.MaxBatches != 10 ||
		time.Duration(s.IdleTimeout) != 5*time.Second || s.MaxDeliveries != 5 {
		t.Errorf("Settings = %+v", s)
	}
}

func TestNewErrorsNameTheVariable(t *testing.T) {
	base := []string{"PERO_STAGE=s", "PERO_CONTAINER_ID=c"}
	tests := []struct {
		env  []string
		want string
	}{
		{[]string{"PERO_CONTAINER_ID=c"}, "PERO_STAGE"},
		{[]string{"PERO_STAGE=a/b", "PERO_CONTAINER_ID=c"}, "PERO_STAGE"},
		{[]string{"PERO_STAGE=s"}, "PERO_CONTAINER_ID"},
		{append(base, "PERO_ZOOKEEPER= , "), "PERO_ZOOKEEPER"},
		{append(base, "PERO_ZK_ROOT=pero"), "PERO_ZK_ROOT"},
		{append(base, "PERO_ZK_AUTH=nocolon"), "PERO_ZK_AUTH"},
		{append(base, "PERO_ZK_AUTH=a:b", "PERO_ZK_AUTH_FILE=/x"), "PERO_ZK_AUTH_FILE"},
		{append(base, "PERO_MQ_PASSWORD=a", "PERO_MQ_PASSWORD_FILE=/x"), "PERO_MQ_PASSWORD"},
		{append(base, "PERO_FTP_PASSWORD_FILE=/does/not/exist"), "PERO_FTP_PASSWORD_FILE"},
		{append(base, "PERO_MQ_TLS=maybe"), "PERO_MQ_TLS"},
		{append(base, "PERO_CACHE_MAX_BYTES=lots"), "PERO_CACHE_MAX_BYTES"},
		{append(base, "PERO_CACHE_MAX_BYTES=-5"), "PERO_CACHE_MAX_BYTES"},
		{append(base, "PERO_MODEL_MAX_RATIO=0"), "PERO_MODEL_MAX_RATIO"},
		{append(base, "PERO_MODEL_MAX_FILES=0"), "PERO_MODEL_MAX_FILES"},
		{append(base, "LOG_LEVEL=loud"), "LOG_LEVEL"},
		{append(base, "LOG_FORMAT=xml"), "LOG_FORMAT"},
		{append(base, "PERO_GRACE_PERIOD=10"), "PERO_GRACE_PERIOD"},
		{append(base, "PERO_GRACE_PERIOD=0s"), "PERO_GRACE_PERIOD"},
		{append(base, "PERO_BATCH_WAIT=-1s"), "PERO_BATCH_WAIT"},
		{append(base, "PERO_BATCH_SIZE=0"), "PERO_BATCH_SIZE"},
		{append(base, "PERO_BATCH_SIZE=70000"), "PERO_BATCH_SIZE"},
		{append(base, "PERO_MAX_BATCHES=x"), "PERO_MAX_BATCHES"},
		{append(base, "PERO_MAX_DELIVERIES=0"), "PERO_MAX_DELIVERIES"},
		{append(base, "PERO_IDLE_TIMEOUT=soon"), "PERO_IDLE_TIMEOUT"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			_, err := New(tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New(%q) = %v, want an error naming %s", tc.env, err, tc.want)
			}
			if ExitCode(err) != ExitConfig {
				t.Errorf("exit code %d, want %d", ExitCode(err), ExitConfig)
			}
		})
	}
}

func TestNewReportsAllProblems(t *testing.T) {
	_, err := New([]string{"LOG_LEVEL=loud", "PERO_BATCH_SIZE=0"})
	for _, v := range []string{"PERO_STAGE", "PERO_CONTAINER_ID", "LOG_LEVEL", "PERO_BATCH_SIZE"} {
		if err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("error %v does not name %s", err, v)
		}
	}
}

func TestNewKeepsSecretsOutOfErrors(t *testing.T) {
	_, err := New([]string{"PERO_MQ_PASSWORD=hunter2", "PERO_MQ_PASSWORD_FILE=/x", "PERO_ZK_AUTH=hunter3"})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, s := range []string{"hunter2", "hunter3"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error shows a secret: %v", err)
		}
	}
}

func TestSettingsValidation(t *testing.T) {
	cfg := Config{Stage: "s", Override: Override{MaxDeliveries: 0}}
	if _, err := cfg.Settings(zookeeper.Settings{BatchSize: -1}); err == nil || !strings.Contains(err.Error(), "batch_size") {
		t.Errorf("err = %v, want batch_size", err)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1": 1, "1K": 1000, "2KiB": 2048, "1.5Gi": 3 << 29, "3MB": 3e6, "1T": 1e12} {
		got, err := parseBytes(in)
		if err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "0", "-1", "1Q", "1e30Ti"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) accepted", in)
		}
	}
}

func TestExitCode(t *testing.T) {
	if ExitCode(nil) != ExitOK || ExitCode(errors.New("x")) != ExitInternal {
		t.Error("plain errors")
	}
	wrapped := errors.Join(errors.New("a"), exitErr(ExitModel, errors.New("b")))
	if ExitCode(wrapped) != ExitModel {
		t.Errorf("ExitCode(wrapped) = %d", ExitCode(wrapped))
	}
	if exitErr(ExitConfig, exitErr(ExitModel, errors.New("b"))).(*ExitError).Code != ExitModel {
		t.Error("exitErr must keep the inner code")
	}
}
