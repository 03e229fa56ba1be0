package message

import (
	"google.golang.org/protobuf/reflect/protoregistry"
	_ "google.golang.org/protobuf/types/known/timestamppb"
)

func protoregistryFiles() *protoregistry.Files { return protoregistry.GlobalFiles }
