package reliability

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	be "encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/ftpstore"
	"github.com/pero-worker/pero-worker/internal/message"
	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

const detModel = "ch_PP-OCRv4_det_infer.onnx"

// ocrAssets finds the detection model and ONNX Runtime: $PERO_MODELS_DIR, models/ (make models)
// or ../shared/assets; the test is skipped without them.
func ocrAssets(t *testing.T) (model, ortLib string) {
	t.Helper()
	root := repoRoot()
	type cand struct{ model, lib string }
	var cands []cand
	if d := os.Getenv("PERO_MODELS_DIR"); d != "" {
		cands = append(cands, cand{filepath.Join(d, "ocr", detModel), filepath.Join(d, "onnxruntime", "libonnxruntime.so.1")})
	}
	cands = append(cands,
		cand{filepath.Join(root, "models", "ocr", detModel), filepath.Join(root, "models", "onnxruntime", "libonnxruntime.so.1")},
		cand{filepath.Join(root, "..", "shared", "assets", "models", "pp-ocrv4", detModel),
			filepath.Join(root, "..", "shared", "assets", "onnxruntime", "linux-x64", "libonnxruntime.so.1")})
	for _, c := range cands {
		_, errM := os.Stat(c.model)
		_, errL := os.Stat(c.lib)
		if errM == nil && errL == nil {
			return c.model, c.lib
		}
	}
	t.Skip("no detection model and ONNX Runtime (PERO_MODELS_DIR, `make models` or ../shared/assets): skipping the detect stage")
	return "", ""
}

// ocrImage is the function image with ONNX Runtime, built once.
func ocrImage(t *testing.T, ortLib string) string {
	return build(t, "ocr-image", func() (string, error) {
		tag := "pero-reliability/function-ocr:" + randomHex(6)
		cmd := exec.Command(filepath.Join(repoRoot(), "images", "function", "build.sh"), "-t", tag, "--onnxruntime", ortLib)
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("%w\n%s", err, out)
		}
		return tag, nil
	})
}

// pngHeader is a PNG that claims w x h pixels and holds none.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(kind string, data []byte) {
		_ = be.Write(&b, be.BigEndian, uint32(len(data)))
		crc := crc32.NewIEEE()
		crc.Write([]byte(kind))
		crc.Write(data)
		b.WriteString(kind)
		b.Write(data)
		_ = be.Write(&b, be.BigEndian, crc.Sum32())
	}
	ihdr := make([]byte, 13)
	be.BigEndian.PutUint32(ihdr[0:], w)
	be.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk("IHDR", ihdr)
	chunk("IEND", nil)
	return b.Bytes()
}

// TestCorruptImagesThroughDetect: pages a raw publisher sends to a detect stage (ONNX Runtime and
// the PP-OCRv4 detection model in a watchdog-launched container) that are not images, are cut
// short, or claim a size no decoder should allocate. Each fails to the output stage with the
// decoder's reason; the good page among them is detected; the container keeps running.
func TestCorruptImagesThroughDetect(t *testing.T) {
	t.Parallel()
	model, ortLib := ocrAssets(t)
	s := newSystem(t)
	img := ocrImage(t, ortLib)
	out := s.output()

	weights, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	gz := gzip.NewWriter(&archive)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: detModel, Mode: 0o644, Size: int64(len(weights)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(weights)
	_ = tw.Close()
	_ = gz.Close()
	st, err := ftpstore.New(ftpstore.Config{Addr: s.svc.ftpAddr(), User: s.svc.user, Password: s.svc.ftpPassword})
	if err != nil {
		t.Fatal(err)
	}
	stage := testenv.Unique("detect")
	remote := "models/" + stage + "/det.tar.gz"
	sum, _, err := st.Upload(ctxFor(t, 60*time.Second), remote, &archive)
	if err != nil {
		t.Fatal(err)
	}
	s.stage(zookeeper.Stage{Name: stage, ConfigPath: remote, ModelSHA256: sum, Settings: zookeeper.Settings{
		Function: "detect", Image: img, BatchSize: 4, MaxContainers: 1, MemoryMB: 1024,
		IdleTimeout: zookeeper.Duration(3 * time.Second)}})
	wd := s.watchdog("wd-a", "PERO_ALLOWED_IMAGES="+s.image+","+img)

	page := image.NewGray(image.Rect(0, 0, 200, 64))
	for i := range page.Pix {
		page.Pix[i] = 255
	}
	for x := 20; x < 180; x++ { // a dark bar, something to detect
		for y := 24; y < 40; y++ {
			page.SetGray(x, y, color.Gray{})
		}
	}
	var good bytes.Buffer
	if err := png.Encode(&good, page); err != nil {
		t.Fatal(err)
	}
	inputs := map[string][]byte{
		"good.png":      good.Bytes(),
		"truncated.png": good.Bytes()[:good.Len()/2],
		"notes.png":     []byte("%PDF-1.4 not an image at all"),
		"garbage.jpg":   append([]byte{0xff, 0xd8, 0xff, 0xe0}, bytes.Repeat([]byte{0x42}, 500)...),
		"huge.png":      pngHeader(100000, 100000),
		"empty.png":     {},
	}
	var ids []string
	name := map[string]string{}
	var bodies [][]byte
	for n, data := range inputs {
		b, id := encode(t, n, data, stage, out)
		bodies = append(bodies, b)
		ids = append(ids, id)
		name[id] = n
	}
	s.publishRaw(stage, bodies...)

	acc := s.settle(ids, out, []string{stage}, 0, 180*time.Second)
	for id, copies := range acc.out {
		req := copies[0]
		switch n := name[id]; {
		case n == "good.png":
			if message.Failed(req) {
				t.Errorf("%s failed: %s", n, message.FailureText(req))
			}
		case !message.Failed(req):
			t.Errorf("%s went through a detect stage", n)
		case !strings.Contains(message.FailureText(req), "image"):
			t.Errorf("%s failed without saying the image is bad: %s", n, message.FailureText(req))
		default:
			t.Logf("%s: %s", n, message.FailureText(req))
		}
	}
	if l := wd.lines("container failed"); len(l) > 0 {
		t.Errorf("containers failed: %q", l)
	}
}
