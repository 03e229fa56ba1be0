// Package ocr is the OCR function: text line detection and recognition
// through ONNX Runtime, with the PP-OCRv4 detector and the project's own
// pero-latin recognizer (or PP-OCRv4's, by configuration), in pure Go apart
// from the runtime itself.
//
// A page goes through these steps, one file each:
//
//	image.go     decode PNG, JPEG, TIFF, BMP, WebP, GIF within a pixel limit
//	detect.go    resize and normalise for the DB detector; the probability map
//	             to line boxes (connected regions, minimum-area rectangles,
//	             box score, unclip)
//	crop.go      each box sampled straight into the recogniser's input
//	             (perspective map and scale in one bilinear pass)
//	engine.go    model runs: the optional 0/180 degree classifier, recognition
//	             in batches of similar width, parallel within a worker limit
//	ctc.go       greedy CTC decoding with character positions
//	order.go     reading order: columns and sections first, then rows
//	pagexml.go   PAGE XML 2019 writer and reader; alto.go ALTO v4 writer
//	stages.go    the ocr, detect and recognize functions of the stage contract
//
// config.go documents the config.ini a stage takes. The ONNX Runtime library
// needs cgo; without it (runtime_nocgo.go) every model load fails with an
// error that says so, and the rest of the package still builds and tests.
package ocr
