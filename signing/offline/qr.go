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

// ReadQR finds and decodes the QR code in img (a scan or a photo). gozxing's finder-pattern search now and
// then locks onto a false pattern in the data area (about 2 % of clean renderings at 4 pixels per module and
// under 1 % of photo stand-ins in TestReadQRManyCodes); sampled at half the resolution the same image reads.
// So ReadQR tries the image as it is, then halved, then gozxing's own conversion of it, then as a pure code
// (a clean rendering filling the image). A result is accepted only as gozxing decoded it, with its
// Reed-Solomon correction; the offline check then verifies the signature over what was read.
func ReadQR(img image.Image) (string, error) {
	plane, stride, w, h := grey(img)
	hard := map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true}
	decode := func(src gozxing.LuminanceSource, hints map[gozxing.DecodeHintType]any) (string, error) {
		bmp, err := gozxing.NewBinaryBitmap(gozxing.NewHybridBinarizer(src))
		if err != nil {
			return "", err
		}
		res, err := gzqr.NewQRCodeReader().Decode(bmp, hints)
		if err != nil {
			return "", err
		}
		return res.GetText(), nil
	}
	text, err := decode(planar(img, plane, stride, w, h), hard)
	if err == nil {
		return text, nil
	}
	first := err
	if w >= 42 && h >= 42 { // a version-1 code with its quiet zone at one pixel per module is 29 wide
		hp, hw, hh := halve(plane, stride, w, h)
		if text, err := decode(planar(nil, hp, hw, hw, hh), hard); err == nil {
			return text, nil
		}
	}
	if bmp, err := gozxing.NewBinaryBitmapFromImage(img); err == nil {
		if res, err := gzqr.NewQRCodeReader().Decode(bmp, hard); err == nil {
			return res.GetText(), nil
		}
	}
	if text, err := decode(planar(img, plane, stride, w, h), map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true}); err == nil {
		return text, nil
	}
	// The hybrid binarizer's local thresholds sometimes break a finder pattern of a crisp scan (a printed page
	// at 150 dpi was missed about once in eight); one global threshold, at full and at half size, finds it.
	global := func(src gozxing.LuminanceSource) (string, error) {
		bmp, err := gozxing.NewBinaryBitmap(gozxing.NewGlobalHistgramBinarizer(src))
		if err != nil {
			return "", err
		}
		res, err := gzqr.NewQRCodeReader().Decode(bmp, hard)
		if err != nil {
			return "", err
		}
		return res.GetText(), nil
	}
	if text, err := global(planar(img, plane, stride, w, h)); err == nil {
		return text, nil
	}
	if w >= 42 && h >= 42 {
		hp, hw, hh := halve(plane, stride, w, h)
		if text, err := global(planar(nil, hp, hw, hw, hh)); err == nil {
			return text, nil
		}
	}
	return "", fmt.Errorf("%w: %v", ErrNoQR, first)
}

// grey returns the image's grey levels as a plane. Photos decode to YCbCr (JPEG) or grey (scans), whose luma
// plane is used as it is; gozxing's generic path calls At for every pixel, which costs more than the rest of
// the offline check together. Other images are converted pixel by pixel.
func grey(img image.Image) (plane []byte, stride, w, h int) {
	b := img.Bounds()
	w, h = b.Dx(), b.Dy()
	switch m := img.(type) {
	case *image.YCbCr:
		return m.Y[m.YOffset(b.Min.X, b.Min.Y):], m.YStride, w, h
	case *image.Gray:
		return m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, w, h
	}
	g := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			g.Pix[y*g.Stride+x] = color.GrayModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y
		}
	}
	return g.Pix, g.Stride, w, h
}

// planar wraps a grey plane for gozxing; img, if not nil, is the fallback for inconsistent dimensions.
func planar(img image.Image, plane []byte, stride, w, h int) gozxing.LuminanceSource {
	src, err := gozxing.NewPlanarYUVLuminanceSource(plane, stride, h, 0, 0, w, h, false)
	if err != nil && img != nil { // only for inconsistent dimensions, which image types do not produce
		return gozxing.NewLuminanceSourceFromImage(img)
	}
	return src
}

// halve averages each 2 x 2 block of a grey plane.
func halve(plane []byte, stride, w, h int) (out []byte, hw, hh int) {
	hw, hh = w/2, h/2
	out = make([]byte, hw*hh)
	for y := 0; y < hh; y++ {
		r0, r1 := plane[2*y*stride:], plane[(2*y+1)*stride:]
		for x := 0; x < hw; x++ {
			out[y*hw+x] = uint8((int(r0[2*x]) + int(r0[2*x+1]) + int(r1[2*x]) + int(r1[2*x+1]) + 2) / 4)
		}
	}
	return out, hw, hh
}

// MaxImagePixels bounds the images ReadQRFile decodes: a 48-megapixel phone photo passes; a small file that
// claims a huge canvas (a decompression bomb) is refused before any pixel is decoded.
const MaxImagePixels = 50_000_000

// ErrImageTooLarge is returned by ReadQRFile for an image of more than MaxImagePixels pixels.
var ErrImageTooLarge = errors.New("offline: image too large")

// ReadQRFile decodes the QR code in a PNG or JPEG image of at most MaxImagePixels pixels.
func ReadQRFile(b []byte) (string, error) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoQR, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > MaxImagePixels {
		return "", fmt.Errorf("%w: %d x %d pixels", ErrImageTooLarge, cfg.Width, cfg.Height)
	}
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoQR, err)
	}
	return ReadQR(img)
}
