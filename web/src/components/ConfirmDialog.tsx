import * as Dialog from "@radix-ui/react-dialog";
import { useState, type ReactNode } from "react";

interface ConfirmDialogProps {
  /** The button that opens the dialog. */
  trigger: ReactNode;
  title: string;
  description: ReactNode;
  confirmLabel: string;
  danger?: boolean;
  /** Text the user must type to enable the confirm button (for destructive actions). */
  typeToConfirm?: string;
  onConfirm: () => Promise<unknown> | void;
}

/** An accessible confirmation dialog (focus trapped, Escape closes, focus returns to the trigger). */
export function ConfirmDialog({ trigger, title, description, confirmLabel, danger, typeToConfirm, onConfirm }: ConfirmDialogProps) {
  const [open, setOpen] = useState(false);
  const [typed, setTyped] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const ready = !typeToConfirm || typed === typeToConfirm;
  async function confirm() {
    setBusy(true);
    setError(null);
    try {
      await onConfirm();
      setOpen(false);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  }
  return (
    <Dialog.Root
      open={open}
      onOpenChange={(o) => {
        setOpen(o);
        setTyped("");
        setError(null);
      }}
    >
      <Dialog.Trigger asChild>{trigger}</Dialog.Trigger>
      <Dialog.Portal>
        <Dialog.Overlay className="dialog-overlay" />
        <Dialog.Content className="dialog">
          <Dialog.Title>{title}</Dialog.Title>
          <Dialog.Description asChild>
            <div className="dialog-body">{description}</div>
          </Dialog.Description>
          {typeToConfirm && (
            <div className="field">
              <label htmlFor="confirm-typed">
                Type <code>{typeToConfirm}</code> to confirm
              </label>
              <input id="confirm-typed" value={typed} onChange={(e) => setTyped(e.target.value)} autoComplete="off" />
            </div>
          )}
          {error && (
            <p className="field-error" role="alert">
              {error}
            </p>
          )}
          <div className="dialog-actions">
            <Dialog.Close asChild>
              <button type="button" className="btn">
                Cancel
              </button>
            </Dialog.Close>
            <button type="button" className={danger ? "btn btn-danger" : "btn btn-primary"} disabled={!ready || busy} onClick={confirm}>
              {busy ? "Working…" : confirmLabel}
            </button>
          </div>
        </Dialog.Content>
      </Dialog.Portal>
    </Dialog.Root>
  );
}
