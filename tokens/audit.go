package tokens

import "encoding/json"

// eventData marshals audit details. The values are ours (maps of strings and numbers), so Marshal cannot fail.
func eventData(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}
