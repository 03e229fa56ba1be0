// Package testimage builds, offline and FROM scratch, the container images the watchdog's tests
// launch, and removes them afterwards.
package testimage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// RepoRoot is the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

var (
	mu    sync.Mutex
	built = map[string]string{} // kind -> tag
	errs  = map[string]error{}
)

// Probe returns the tag of the probe image (see probe/main.go), building it on first use.
func Probe(t testing.TB) string { return get(t, "probe", buildProbe) }

// Function returns the tag of the function image (the runner with the built-in functions) built
// by images/function/build.sh, building it on first use.
func Function(t testing.TB) string { return get(t, "function", buildFunction) }

func get(t testing.TB, kind string, build func(ctx context.Context, tag string) error) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if tag, ok := built[kind]; ok {
		return tag
	}
	if err, ok := errs[kind]; ok {
		t.Fatalf("build %s image: %v", kind, err)
	}
	tag := "pero-test-" + kind + ":" + random()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	if err := build(ctx, tag); err != nil {
		errs[kind] = err
		removeTag(tag)
		t.Fatalf("build %s image: %v", kind, err)
	}
	t.Logf("built %s in %s", tag, time.Since(start).Round(time.Millisecond))
	built[kind] = tag
	return tag
}

// Cleanup removes every image built in this process; call it from TestMain after the
// containers that used them are gone (an image still in use would only lose its tag).
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	for kind, tag := range built {
		removeTag(tag)
		delete(built, kind)
	}
}

// removeTag removes the image tag names, by ID, so that the layers of the build go with it.
func removeTag(tag string) {
	id, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", tag).Output()
	if err != nil {
		return
	}
	_ = exec.Command("docker", "image", "rm", "--force", tag).Run()
	// The build cache gives identical builds of other test processes the same image: delete it
	// only when no tag is left on it.
	tags, err := exec.Command("docker", "image", "inspect", "--format", "{{len .RepoTags}}", strings.TrimSpace(string(id))).Output()
	if err == nil && strings.TrimSpace(string(tags)) == "0" {
		_ = exec.Command("docker", "image", "rm", strings.TrimSpace(string(id))).Run()
	}
}

func random() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return nil
}

func buildProbe(ctx context.Context, tag string) error {
	dir, err := os.MkdirTemp("", "pero-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := run(ctx, RepoRoot(), []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-o",
		filepath.Join(dir, "probe"), "./watchdog/internal/testimage/probe"); err != nil {
		return err
	}
	dockerfile := "FROM scratch\nCOPY probe /probe\nUSER 65532:65532\nENTRYPOINT [\"/probe\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	return run(ctx, dir, []string{"DOCKER_BUILDKIT=0"}, "docker", "build", "-q", "-t", tag, ".")
}

func buildFunction(ctx context.Context, tag string) error {
	root := RepoRoot()
	return run(ctx, root, nil, filepath.Join(root, "images", "function", "build.sh"), "-t", tag, "--without-onnxruntime")
}
