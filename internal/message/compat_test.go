package message

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// originalFile is the schema of DCGM/pero-worker, built field by field from its published
// field numbers, so these tests check compatibility against it and not against ourselves.
func originalFile(t *testing.T) protoreflect.FileDescriptor {
	t.Helper()
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	byt := descriptorpb.FieldDescriptorProto_TYPE_BYTES.Enum()
	i32 := descriptorpb.FieldDescriptorProto_TYPE_INT32.Enum()
	msg := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	f := func(name string, num int32, typ *descriptorpb.FieldDescriptorProto_Type, label *descriptorpb.FieldDescriptorProto_Label, typeName string) *descriptorpb.FieldDescriptorProto {
		fd := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Type: typ, Label: label, JsonName: proto.String(name)}
		if typeName != "" {
			fd.TypeName = proto.String(typeName)
		}
		return fd
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("original/pero.proto"),
		Package:    proto.String("original"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/timestamp.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Data"), Field: []*descriptorpb.FieldDescriptorProto{
				f("name", 1, str, opt, ""), f("content", 2, byt, opt, ""),
			}},
			{Name: proto.String("StageLog"), Field: []*descriptorpb.FieldDescriptorProto{
				f("host_id", 1, str, opt, ""), f("stage", 2, str, opt, ""),
				f("start", 3, msg, opt, ".google.protobuf.Timestamp"), f("end", 4, msg, opt, ".google.protobuf.Timestamp"),
				f("status", 5, str, opt, ""), f("log", 6, str, opt, ""), f("version", 7, str, opt, ""),
			}},
			{Name: proto.String("ProcessingRequest"), Field: []*descriptorpb.FieldDescriptorProto{
				f("uuid", 1, str, opt, ""), f("page_uuid", 2, str, opt, ""), f("priority", 3, i32, opt, ""),
				f("start_time", 4, msg, opt, ".google.protobuf.Timestamp"),
				f("processing_stages", 5, str, rep, ""), f("results", 6, msg, rep, ".original.Data"),
				f("logs", 7, msg, rep, ".original.StageLog"),
			}},
		},
	}
	fd, err := protodesc.NewFile(fdp, protoregistryFiles())
	if err != nil {
		t.Fatalf("build original descriptor: %v", err)
	}
	return fd
}

// TestOriginalBytesDecode feeds hand-assembled bytes, laid out with the original field
// numbers, to our decoder.
func TestOriginalBytesDecode(t *testing.T) {
	ts := func(sec int64) []byte {
		var b []byte
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(sec))
	}
	data := func(name string, content []byte) []byte {
		var b []byte
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, name)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		return protowire.AppendBytes(b, content)
	}
	var log []byte
	for _, kv := range []struct {
		n int
		v string
	}{{1, "host-a"}, {2, "ocr"}, {5, "OK"}, {6, "fine"}, {7, "2024-01-02T03:04:05+00:00"}} {
		log = protowire.AppendTag(log, protowire.Number(kv.n), protowire.BytesType)
		log = protowire.AppendString(log, kv.v)
	}
	log = protowire.AppendTag(log, 3, protowire.BytesType)
	log = protowire.AppendBytes(log, ts(100))
	log = protowire.AppendTag(log, 4, protowire.BytesType)
	log = protowire.AppendBytes(log, ts(160))

	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, "u-1")
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, "p-1")
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendBytes(b, ts(42))
	for _, s := range []string{"parse", "out"} {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	b = protowire.AppendTag(b, 6, protowire.BytesType)
	b = protowire.AppendBytes(b, data("page.jpg", []byte{0xff, 0xd8, 0xff}))
	b = protowire.AppendTag(b, 6, protowire.BytesType)
	b = protowire.AppendBytes(b, data("page_page.xml", []byte("<PcGts/>")))
	b = protowire.AppendTag(b, 7, protowire.BytesType)
	b = protowire.AppendBytes(b, log)

	r, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if r.Uuid != "u-1" || r.PageUuid != "p-1" || r.Priority != 1 || r.StartTime.GetSeconds() != 42 {
		t.Errorf("header fields: %+v", r)
	}
	if got := r.ProcessingStages; len(got) != 2 || got[0] != "parse" || got[1] != "out" {
		t.Errorf("stages = %v", got)
	}
	if len(r.Results) != 2 || r.Results[0].Name != "page.jpg" || !bytes.Equal(r.Results[0].Content, []byte{0xff, 0xd8, 0xff}) ||
		r.Results[1].Name != "page_page.xml" {
		t.Errorf("results = %v", r.Results)
	}
	if len(r.Logs) != 1 {
		t.Fatalf("logs = %v", r.Logs)
	}
	l := r.Logs[0]
	if l.HostId != "host-a" || l.Stage != "ocr" || l.Status != "OK" || l.Log != "fine" || l.Version != "2024-01-02T03:04:05+00:00" ||
		l.Start.GetSeconds() != 100 || l.End.GetSeconds() != 160 {
		t.Errorf("log = %+v", l)
	}
	if r.Status != Status_STATUS_UNSPECIFIED || Failed(r) {
		t.Errorf("an original OK message must not read as failed")
	}
}

// TestOurBytesReadByOriginal encodes a request that uses every new field and reads it with
// the original schema: the original fields come through intact and the new ones are
// unknown fields that an old client ignores.
func TestOurBytesReadByOriginal(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r, err := NewRequest("scan.png", []byte("PNGDATA"), []string{"detect", "recognize", "out"}, 1, now)
	if err != nil {
		t.Fatal(err)
	}
	r.Results[0].Sha256 = "abc"
	r.Results = append(r.Results, &Data{Name: "big.bin", Ref: "ftp://h/x", Size: 1 << 30})
	r.Attempts = 2
	if _, err := Fail(r, "detect", &StageLog{HostId: "h1", Start: timestamppb.New(now), End: timestamppb.New(now.Add(time.Second)),
		Enqueued: timestamppb.New(now), Attempt: 2, Version: "v1"}, errBoom{}); err != nil {
		t.Fatal(err)
	}
	body, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}

	fd := originalFile(t)
	md := fd.Messages().ByName("ProcessingRequest")
	old := dynamicpb.NewMessage(md)
	if err := proto.Unmarshal(body, old); err != nil {
		t.Fatalf("original schema cannot read our bytes: %v", err)
	}
	get := func(name string) protoreflect.Value { return old.Get(md.Fields().ByName(protoreflect.Name(name))) }
	if get("uuid").String() != r.Uuid || get("priority").Int() != 1 {
		t.Errorf("uuid/priority lost")
	}
	stages := get("processing_stages").List()
	if stages.Len() != 1 || stages.Get(0).String() != "out" {
		t.Errorf("a failed request must be addressed to the output stage only, got %v", stages)
	}
	results := get("results").List()
	if results.Len() != 2 {
		t.Fatalf("results: %d", results.Len())
	}
	img := results.Get(0).Message()
	if img.Get(img.Descriptor().Fields().ByName("name")).String() != "scan.png" ||
		string(img.Get(img.Descriptor().Fields().ByName("content")).Bytes()) != "PNGDATA" {
		t.Errorf("input image lost")
	}
	logs := get("logs").List()
	if logs.Len() != 1 {
		t.Fatalf("logs: %d", logs.Len())
	}
	lg := logs.Get(0).Message()
	if s := lg.Get(lg.Descriptor().Fields().ByName("status")).String(); s != "Failed" {
		t.Errorf("original clients look for status Failed in the log, got %q", s)
	}
	if len(old.GetUnknown()) == 0 {
		t.Errorf("new fields should reach the original as unknown fields")
	}

	// And back: the original re-encodes (keeping unknown fields, as protobuf does) and we
	// still see our new fields.
	again, err := proto.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Decode(again)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Status != Status_STATUS_FAILED || r2.Error != "boom" || r2.FailedStage != "detect" || r2.Results[1].Ref != "ftp://h/x" ||
		r2.Logs[0].Attempt != 2 || r2.Logs[0].Enqueued.AsTime() != now {
		t.Errorf("new fields lost on the round trip through an original client: %+v", r2)
	}
}

// TestOriginalPublisherBuilt encodes with the original schema (what an old Python publisher
// sends) and decodes with ours.
func TestOriginalPublisherBuilt(t *testing.T) {
	fd := originalFile(t)
	md := fd.Messages().ByName("ProcessingRequest")
	dd := fd.Messages().ByName("Data")
	m := dynamicpb.NewMessage(md)
	m.Set(md.Fields().ByName("uuid"), protoreflect.ValueOfString("x"))
	m.Set(md.Fields().ByName("priority"), protoreflect.ValueOfInt32(1))
	st := m.Mutable(md.Fields().ByName("processing_stages")).List()
	st.Append(protoreflect.ValueOfString("ocr"))
	st.Append(protoreflect.ValueOfString("out"))
	d := dynamicpb.NewMessage(dd)
	d.Set(dd.Fields().ByName("name"), protoreflect.ValueOfString("a.png"))
	d.Set(dd.Fields().ByName("content"), protoreflect.ValueOfBytes([]byte{1, 2, 3}))
	m.Mutable(md.Fields().ByName("results")).List().Append(protoreflect.ValueOfMessage(d))
	body, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	if CurrentStage(r) != "ocr" || OutputStage(r) != "out" || Input(r).GetName() != "a.png" || r.Priority != 1 {
		t.Errorf("decoded %+v", r)
	}
}

type errBoom struct{}

func (errBoom) Error() string { return "boom" }
