package wire_test

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
)

func tsAt(sec int) *timestamppb.Timestamp {
	return timestamppb.New(base.Add(time.Duration(sec) * time.Second))
}
