package hsm

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"
)

// backend is the part of a PKCS#11 module (PKCS#11 v2.40 section 5) that hsm uses. *pkcs11.Ctx
// implements it; unit tests put a fake behind it. The real tests run on SoftHSM2.
type backend interface {
	Initialize(opts ...pkcs11.InitializeOption) error
	Finalize() error
	Destroy()
	GetSlotList(tokenPresent bool) ([]uint, error)
	GetSlotInfo(slotID uint) (pkcs11.SlotInfo, error)
	GetTokenInfo(slotID uint) (pkcs11.TokenInfo, error)
	OpenSession(slotID uint, flags uint) (pkcs11.SessionHandle, error)
	CloseSession(sh pkcs11.SessionHandle) error
	GetSessionInfo(sh pkcs11.SessionHandle) (pkcs11.SessionInfo, error)
	Login(sh pkcs11.SessionHandle, userType uint, pin string) error
	FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error
	FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error)
	FindObjectsFinal(sh pkcs11.SessionHandle) error
	GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error)
	CreateObject(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	DestroyObject(sh pkcs11.SessionHandle, oh pkcs11.ObjectHandle) error
	GenerateKeyPair(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, public, private []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error)
	SignInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Sign(sh pkcs11.SessionHandle, message []byte) ([]byte, error)
}

var _ backend = (*pkcs11.Ctx)(nil)

// loadBackend loads the PKCS#11 library at path. Unit tests replace it.
var loadBackend = func(path string) (backend, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModule, err)
	}
	c := pkcs11.New(path)
	if c == nil {
		return nil, fmt.Errorf("%w: %s is not a PKCS#11 library", ErrModule, path)
	}
	return c, nil
}

// module is one loaded PKCS#11 library, shared by every Opener in the process: PKCS#11 v2.40 section
// 5.4 allows one C_Initialize per process until C_Finalize, so the registry below counts references
// and calls C_Finalize only when the last user releases the module.
type module struct {
	path string
	p    backend
	refs int // guarded by registry.mu

	mu       sync.Mutex // serialises C_Initialize after a loss
	ownsInit bool       // guarded by mu: this process's C_Initialize succeeded through us
	gen      atomic.Uint64
}

var registry = struct {
	mu sync.Mutex
	m  map[string]*module
}{m: map[string]*module{}}

// canonicalPath resolves symbolic links so that two spellings of one library share a module.
func canonicalPath(path string) string {
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return filepath.Clean(path)
	}
	return p
}

// openModule loads and initialises the library at path, or returns the module already loaded.
// A module that another library in the process initialised (CKR_CRYPTOKI_ALREADY_INITIALIZED) is
// used as it is and never finalised by Mohr.
func openModule(path string) (*module, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: no module-path in the URI and no default module", ErrModule)
	}
	key := canonicalPath(path)
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if m := registry.m[key]; m != nil {
		m.refs++
		return m, nil
	}
	p, err := loadBackend(key)
	if err != nil {
		return nil, err
	}
	m := &module{path: key, p: p, refs: 1}
	switch err := p.Initialize(); rv(err) {
	case pkcs11.CKR_OK:
		if err != nil {
			p.Destroy()
			return nil, fmt.Errorf("%w: C_Initialize: %w", ErrModule, err)
		}
		m.ownsInit = true
	case pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED:
	default:
		p.Destroy()
		return nil, fmt.Errorf("%w: C_Initialize: %w", ErrModule, err)
	}
	registry.m[key] = m
	return m, nil
}

// release drops one reference; the last one finalises (if Mohr initialised it) and unloads the library.
func (m *module) release() error {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	m.refs--
	if m.refs > 0 {
		return nil
	}
	delete(registry.m, m.path)
	m.mu.Lock()
	defer m.mu.Unlock()
	var err error
	if m.ownsInit {
		if e := m.p.Finalize(); e != nil && rv(e) != pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED {
			err = rvError("C_Finalize", e)
		}
	}
	m.p.Destroy()
	return err
}

// reinit calls C_Initialize again after the module answered CKR_CRYPTOKI_NOT_INITIALIZED, which
// happens when another user of the library in this process called C_Finalize. seen is the generation
// the caller worked with; if another goroutine already re-initialised, reinit does nothing.
func (m *module) reinit(seen uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gen.Load() != seen {
		return nil
	}
	err := m.p.Initialize()
	switch rv(err) {
	case pkcs11.CKR_OK:
		if err != nil {
			return fmt.Errorf("%w: C_Initialize: %w", ErrModule, err)
		}
		m.ownsInit = true
	case pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED:
	default:
		return fmt.Errorf("%w: C_Initialize: %w", ErrModule, err)
	}
	m.gen.Add(1)
	return nil
}
