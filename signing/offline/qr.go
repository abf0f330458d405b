package offline

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"

	_ "image/jpeg" // photos of printed prescriptions

	"github.com/makiuchi-d/gozxing"
	gzqr "github.com/makiuchi-d/gozxing/qrcode"
	qrcode "github.com/yeqown/go-qrcode/v2"
)

// QR is an encoded QR code: its version (ISO/IEC 18004 §5.3.1, 1 to 40) and its module matrix.
type QR struct {
	Version int
	Modules [][]bool // [row][column], true for dark
}

// NewQR encodes text (EncodeText's output: only the QR alphanumeric alphabet) as a QR code with error
// correction level M (ISO/IEC 18004 §5.3.8, about 15% recovery: what EU DCC verifiers read from phone cameras).
func NewQR(text string) (*QR, error) {
	q, err := qrcode.NewWith(text, qrcode.WithErrorCorrectionLevel(qrcode.ErrorCorrectionMedium),
		qrcode.WithEncodingMode(qrcode.EncModeAlphanumeric))
	if err != nil {
		return nil, fmt.Errorf("offline: qr: %w", err)
	}
	var w matrixWriter
	if err := q.Save(&w); err != nil {
		return nil, fmt.Errorf("offline: qr: %w", err)
	}
	// Bitmap is indexed [x][y]: transpose to rows.
	n := len(w.bits)
	rows := make([][]bool, n)
	for y := range rows {
		rows[y] = make([]bool, n)
		for x := 0; x < n; x++ {
			rows[y][x] = w.bits[x][y]
		}
	}
	return &QR{Version: (n - 17) / 4, Modules: rows}, nil
}

type matrixWriter struct{ bits [][]bool }

func (m *matrixWriter) Write(mat qrcode.Matrix) error { m.bits = mat.Bitmap(); return nil }
func (m *matrixWriter) Close() error                  { return nil }

// Image renders the code with scale pixels per module and the 4-module quiet zone ISO/IEC 18004 §5.3.8 asks for.
func (q *QR) Image(scale int) *image.Gray {
	if scale < 1 {
		scale = 1
	}
	n := len(q.Modules)
	size := (n + 8) * scale
	img := image.NewGray(image.Rect(0, 0, size, size))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for y, row := range q.Modules {
		for x, dark := range row {
			if !dark {
				continue
			}
			for dy := 0; dy < scale; dy++ {
				for dx := 0; dx < scale; dx++ {
					img.SetGray((x+4)*scale+dx, (y+4)*scale+dy, color.Gray{})
				}
			}
		}
	}
	return img
}

// QRPNG returns the QR code of text as a PNG with scale pixels per module, and the code's version. The PDF
// renderer (signing/pades) places this image on the printed prescription.
func QRPNG(text string, scale int) ([]byte, int, error) {
	q, err := NewQR(text)
	if err != nil {
		return nil, 0, err
	}
	var b bytes.Buffer
	if err := png.Encode(&b, q.Image(scale)); err != nil {
		return nil, 0, fmt.Errorf("offline: png: %w", err)
	}
	return b.Bytes(), q.Version, nil
}

// ErrNoQR is returned when no readable QR code is found in an image.
var ErrNoQR = errors.New("offline: no readable QR code in the image")

// ReadQR finds and decodes the QR code in img (a scan or a photo).
func ReadQR(img image.Image) (string, error) {
	bmp, err := gozxing.NewBinaryBitmap(gozxing.NewHybridBinarizer(luminance(img)))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoQR, err)
	}
	hints := map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true}
	res, err := gzqr.NewQRCodeReader().Decode(bmp, hints)
	if err != nil { // once more through gozxing's own conversion of the image
		if bmp, err = gozxing.NewBinaryBitmapFromImage(img); err == nil {
			res, err = gzqr.NewQRCodeReader().Decode(bmp, hints)
		}
	}
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoQR, err)
	}
	return res.GetText(), nil
}

// luminance gives the decoder the image's grey levels. Photos decode to YCbCr (JPEG) or grey (scans), whose
// luma plane is used as it is; gozxing's generic path calls At for every pixel, which costs more than the rest
// of the offline check together. Other images are converted pixel by pixel.
func luminance(img image.Image) gozxing.LuminanceSource {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	var plane []byte
	var stride int
	switch m := img.(type) {
	case *image.YCbCr:
		plane, stride = m.Y[m.YOffset(b.Min.X, b.Min.Y):], m.YStride
	case *image.Gray:
		plane, stride = m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride
	default:
		g := image.NewGray(image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				g.Pix[y*g.Stride+x] = color.GrayModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y
			}
		}
		plane, stride = g.Pix, g.Stride
	}
	src, err := gozxing.NewPlanarYUVLuminanceSource(plane, stride, h, 0, 0, w, h, false)
	if err != nil { // only for inconsistent dimensions, which image types do not produce
		return gozxing.NewLuminanceSourceFromImage(img)
	}
	return src
}

// ReadQRFile decodes the QR code in a PNG or JPEG image.
func ReadQRFile(b []byte) (string, error) {
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoQR, err)
	}
	return ReadQR(img)
}
