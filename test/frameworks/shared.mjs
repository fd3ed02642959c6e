// What the framework scripts share: their environment, the get_weather
// tool each framework wraps in its own tool type, and the trip schema of
// the structured-output cases.
import { z } from 'zod';

// env returns the environment variable name, which must be set.
export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

export const weather = {
  name: 'get_weather',
  description: 'Weather in a city',
  schema: z.object({ city: z.string() }),
  run: async ({ city }) => `sunny in ${city}`,
};

export const Trip = z.object({ city: z.string(), days: z.number() });
