package test

import (
	"errors"
	"strconv"

	"github.com/durehq/dure/internal/api"
)

func itoa(id uint64) string { return strconv.FormatUint(id, 10) }

func asAPIError(err error, target **api.Error) bool { return errors.As(err, target) }
