import { gatewayCommand as edgeConfigCommand } from './edge-config.ts';
import { pinCommand } from './gateway-pin.ts';
import { pinsCommand } from './gateway-pins.ts';

/** `mandate gateway …`: `pin` and `pins` (tool pinning, docs/gateway.md) here; `edge-config` and the usage in edge-config.ts. */
export async function gatewayCommand(args: string[]): Promise<number> {
  if (args[0] === 'pins') return pinsCommand(args.slice(1));
  if (args[0] === 'pin') return pinCommand(args.slice(1));
  return edgeConfigCommand(args);
}
