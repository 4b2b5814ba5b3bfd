import { IsLedgerId } from '../validators';
import { IsDisplayName } from './text';

export class RegisterUserDto {
  @IsLedgerId({ example: 'u-alice' })
  userId!: string;

  @IsDisplayName({ optional: true })
  name?: string;
}

export class SwitchActiveOrganizationDto {
  @IsLedgerId()
  organizationId!: string;
}
