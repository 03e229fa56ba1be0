package runner

import (
	"errors"
	"strings"
	"testing"
)

// FuzzNew feeds New environments of arbitrary variables: it never panics, a configuration it
// accepts is usable (the checks New promises hold), and what it refuses is an ExitConfig error.
// Variables naming files are left out: New would read them.
func FuzzNew(f *testing.F) {
	for _, seed := range []string{
		"PERO_STAGE=detect\nHOSTNAME=abc",
		"PERO_STAGE=s\nPERO_CONTAINER_ID=c\nPERO_ZOOKEEPER=a:1, b:2\nPERO_ZK_ROOT=/x/pero\nPERO_BATCH_SIZE=65535",
		"PERO_STAGE=s\nHOSTNAME=h\nPERO_CACHE_MAX_BYTES=1.5GiB\nPERO_MODEL_MAX_RATIO=1e308\nPERO_GRACE_PERIOD=1h",
		"PERO_STAGE=../x\nPERO_CONTAINER_ID=a b\nLOG_LEVEL=loud\nPERO_BATCH_WAIT=-1s\nPERO_ZK_AUTH=nouser",
		"PERO_STAGE=s\nHOSTNAME=h\nPERO_MQ_TLS=true\nPERO_MQ_TLS_SERVER_NAME=mq\nPERO_FTP_TLS=1",
		"PERO_STAGE=s\nHOSTNAME=h\nPERO_CACHE_MAX_BYTES=9223372036854775807Ti\nPERO_MAX_DELIVERIES=0",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		var env []string
		for _, kv := range strings.Split(text, "\n") {
			if k, _, _ := strings.Cut(kv, "="); strings.HasSuffix(strings.TrimSpace(k), "_FILE") {
				continue
			}
			env = append(env, kv)
		}
		cfg, err := New(env)
		if err != nil {
			var ee *ExitError
			if !errors.As(err, &ee) || ee.Code != ExitConfig {
				t.Fatalf("refusal %v is not an ExitConfig error", err)
			}
			return
		}
		switch {
		case cfg.Stage == "" || strings.ContainsAny(cfg.Stage, "/ "):
			t.Fatalf("accepted stage %q", cfg.Stage)
		case cfg.ContainerID == "" || strings.ContainsAny(cfg.ContainerID, "/ "):
			t.Fatalf("accepted container id %q", cfg.ContainerID)
		case len(cfg.ZooKeeper) == 0 || !strings.HasPrefix(cfg.ZKRoot, "/"):
			t.Fatalf("accepted zookeeper %q root %q", cfg.ZooKeeper, cfg.ZKRoot)
		case cfg.CacheMaxBytes <= 0 || cfg.Extract.MaxBytes <= 0 || cfg.Extract.MaxRatio <= 0 || cfg.Extract.MaxFiles <= 0:
			t.Fatalf("accepted limits %d %+v", cfg.CacheMaxBytes, cfg.Extract)
		case cfg.GracePeriod <= 0 || cfg.BatchWait < 0 || cfg.ConnectTimeout <= 0 || cfg.StatsInterval <= 0:
			t.Fatalf("accepted durations %+v", cfg)
		case cfg.Override.BatchSize < 0 || cfg.Override.BatchSize > maxBatchSize || cfg.Override.MaxDeliveries < 0:
			t.Fatalf("accepted overrides %+v", cfg.Override)
		case cfg.LogFormat != "json" && cfg.LogFormat != "text":
			t.Fatalf("accepted log format %q", cfg.LogFormat)
		}
	})
}
