package main

import (
	"path"
	"strings"
	"testing"
)

// FuzzParse feeds parse arbitrary command lines and environments: it never panics, and options
// it accepts satisfy what serve relies on.
func FuzzParse(f *testing.F) {
	for _, seed := range []struct{ args, env string }{
		{"", "PERO_DEFAULT_IMAGE=pero/function:1"},
		{"--backend swarm --cpu-slots -1 --gpus 0,1 --gpu-share 2", "PERO_ALLOWED_IMAGES=repo/*:*"},
		{"--runner-secret mq_password=/run/pw --runner-env A=b", "PERO_DEFAULT_IMAGE=x\nPERO_RUNNER_ENV=K=v, L=w"},
		{"--zk-root / --poll-interval 0s --backoff-max 1s --backoff-base 2s", "PERO_ALLOWED_IMAGES=[\nLOG_LEVEL=loud"},
		{"--help", ""},
		{"--cache-volume none --cache-dir relative", "PERO_DEFAULT_IMAGE=i\nPERO_ZOOKEEPER=,"},
	} {
		f.Add(seed.args, seed.env)
	}
	f.Fuzz(func(t *testing.T, args, env string) {
		o, err := parse(strings.Fields(args), strings.Split(env, "\n"))
		if err != nil {
			return
		}
		switch {
		case len(o.zookeeper) == 0:
			t.Fatalf("accepted no ZooKeeper server")
		case !strings.HasPrefix(o.zkRoot, "/") || o.zkRoot == "/" || strings.HasSuffix(o.zkRoot, "/"):
			t.Fatalf("accepted root %q", o.zkRoot)
		case o.backend != "docker" && o.backend != "swarm":
			t.Fatalf("accepted backend %q", o.backend)
		case o.sessionTimeout <= 0 || o.connectTimeout <= 0 || o.poll <= 0 || o.targetDrain <= 0 || o.aging <= 0 ||
			o.quickExit <= 0 || o.backoffBase <= 0 || o.backoffMax < o.backoffBase || o.stopTimeout <= 0:
			t.Fatalf("accepted durations %+v", o)
		case o.cpuSlots < -1 || o.gpuShare < 1 || o.pidsLimit < 0:
			t.Fatalf("accepted capacity %d %d %d", o.cpuSlots, o.gpuShare, o.pidsLimit)
		case o.defaultImage == "" && len(o.allowedImages) == 0:
			t.Fatalf("accepted no image")
		case o.network == "" || o.scope == "":
			t.Fatalf("accepted network %q scope %q", o.network, o.scope)
		case o.cacheVolume != "" && !path.IsAbs(o.cacheDir):
			t.Fatalf("accepted cache dir %q", o.cacheDir)
		case o.logFormat != "json" && o.logFormat != "text":
			t.Fatalf("accepted log format %q", o.logFormat)
		}
		for _, p := range o.allowedImages {
			if _, err := path.Match(p, ""); err != nil {
				t.Fatalf("accepted pattern %q", p)
			}
		}
		for name, p := range o.runnerSecrets {
			if runnerSecretVars[name] == "" || !path.IsAbs(p) {
				t.Fatalf("accepted secret %s=%s", name, p)
			}
		}
		for _, kv := range o.runnerEnv {
			if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
				t.Fatalf("accepted runner env %q", kv)
			}
		}
	})
}
