package remotepage

import (
	"crypto/rand"
	"encoding/hex"
)

func newRef() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// texts are the pages' words, Persian and English. Keys starting "m." are the script's messages, keyed by
// the JSON error the calls answer.
var texts = map[string]map[string]string{
	"fa": {
		"brand":                  "مهر",
		"tagline":                "امضای دیجیتال سلامت",
		"switch":                 "English",
		"register.title":         "ثبت کلید عبور برای امضای از راه دور",
		"register.intro":         "کد ثبتی را که مسئول ثبت‌نام به شما داده است وارد کنید. سپس دستگاه شما (تلفن، رایانه یا کلید امنیتی) از شما می‌خواهد هویت خود را با اثر انگشت، چهره یا پین تأیید کنید. از این پس فقط همین کلید عبور می‌تواند امضاهای شما را فعال کند.",
		"register.code":          "کد ثبت",
		"register.button":        "ثبت کلید عبور",
		"activate.title":         "تأیید امضا",
		"activate.intro":         "برنامهٔ نسخه‌نویسی شما می‌خواهد اسناد زیر را با کلید امضای شما امضا کند. اگر خودتان این درخواست را داده‌اید، با کلید عبور خود تأیید کنید. این تأیید فقط برای همین اسناد و فقط یک بار معتبر است.",
		"activate.name":          "پزشک",
		"activate.council":       "شمارهٔ نظام پزشکی",
		"activate.count":         "تعداد اسناد",
		"activate.expires":       "مهلت تأیید (UTC)",
		"activate.hashes":        "چکیدهٔ اسناد (SHA-256)",
		"activate.button":        "تأیید با کلید عبور",
		"m.approved":             "تأیید شد. به برنامهٔ نسخه‌نویسی خود برگردید؛ اسناد اکنون امضا می‌شوند.",
		"m.request-not-accepted": "این درخواست امضا پیدا نشد یا قبلاً پاسخ داده شده است.",
		"m.request-expired":      "مهلت این درخواست امضا گذشته است. دوباره از برنامهٔ نسخه‌نویسی امضا کنید.",
		"m.loading":              "در حال دریافت درخواست…",
		"notfound.title":         "این صفحه وجود ندارد",
		"m.working":              "منتظر دستگاه شما…",
		"m.registered":           "کلید عبور ثبت شد. امضای از راه دور شما فعال است.",
		"m.code-not-accepted":    "این کد پذیرفته نشد. آن را دقیقاً همان‌طور که به شما داده شده وارد کنید، یا از مسئول ثبت‌نام کد تازه بخواهید.",
		"m.code-expired":         "این کد منقضی شده است. از مسئول ثبت‌نام کد تازه بخواهید.",
		"m.credential-status":    "وضعیت این اعتبارنامه اجازهٔ این کار را نمی‌دهد.",
		"m.passkey-refused":      "دستگاه شما پاسخ قابل قبولی نداد (تأیید هویت کاربر لازم است). دوباره تلاش کنید یا از مسئول ثبت‌نام کد تازه بخواهید.",
		"m.cancelled":            "عملیات در دستگاه شما لغو شد یا زمان آن گذشت.",
		"m.unsupported":          "این مرورگر از کلید عبور (WebAuthn) پشتیبانی نمی‌کند.",
		"m.bad-request":          "درخواست نامعتبر بود.",
		"m.server":               "خطایی در سامانه رخ داد. شناسهٔ پیگیری:",
		"m.network":              "ارتباط با سامانه برقرار نشد.",
	},
	"en": {
		"brand":                  "Mohr",
		"tagline":                "Digital signatures for health",
		"switch":                 "فارسی",
		"register.title":         "Register your passkey for remote signing",
		"register.intro":         "Enter the registration code the RA officer gave you. Your device (phone, computer or security key) will then ask you to confirm it is you, with a fingerprint, your face or a PIN. From then on only this passkey can activate your signatures.",
		"register.code":          "Registration code",
		"register.button":        "Register passkey",
		"activate.title":         "Approve signing",
		"activate.intro":         "Your prescribing application asks to sign the documents below with your signing key. If you asked for this, approve with your passkey. The approval holds for these documents only, once.",
		"activate.name":          "Physician",
		"activate.council":       "Council number",
		"activate.count":         "Documents",
		"activate.expires":       "Approve before (UTC)",
		"activate.hashes":        "Document hashes (SHA-256)",
		"activate.button":        "Approve with passkey",
		"m.approved":             "Approved. Return to your prescribing application; the documents are being signed.",
		"m.request-not-accepted": "This signing request was not found, or it was already answered.",
		"m.request-expired":      "This signing request has expired. Sign again from your prescribing application.",
		"m.loading":              "Fetching the request…",
		"notfound.title":         "There is no such page",
		"m.working":              "Waiting for your device…",
		"m.registered":           "Your passkey is registered. Your remote signing credential is active.",
		"m.code-not-accepted":    "This code was not accepted. Type it exactly as you were given it, or ask the RA officer for a new one.",
		"m.code-expired":         "This code has expired. Ask the RA officer for a new one.",
		"m.credential-status":    "The credential's status does not allow this.",
		"m.passkey-refused":      "Your device's answer was not accepted (user verification is required). Try again, or ask the RA officer for a new code.",
		"m.cancelled":            "The operation was cancelled on your device, or it timed out.",
		"m.unsupported":          "This browser does not support passkeys (WebAuthn).",
		"m.bad-request":          "The request was not valid.",
		"m.server":               "Something went wrong on our side. Reference:",
		"m.network":              "The service could not be reached.",
	},
}
