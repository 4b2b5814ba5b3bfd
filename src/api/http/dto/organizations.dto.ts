import { ApiProperty } from '@nestjs/swagger';
import { IsIn, IsInt, Max, Min } from 'class-validator';
import { MAX_AMOUNT } from '../../../ledger/identifiers';
import { ROLES, type Role } from '../../../ledger/organization/events';
import { IsLedgerId } from '../validators';
import { IsDisplayName } from './text';

export class CreateOrganizationDto {
  @IsLedgerId()
  organizationId!: string;

  @IsDisplayName()
  name!: string;

  @IsLedgerId({ example: 'u-alice' })
  ownerUserId!: string;
}

export class AddMemberDto {
  @IsLedgerId({ example: 'u-bob' })
  userId!: string;

  @IsIn(ROLES)
  @ApiProperty({ enum: ROLES })
  role!: Role;
}

export class ChangeMemberRoleDto {
  @IsIn(ROLES)
  @ApiProperty({ enum: ROLES })
  role!: Role;
}

export class LowBalanceThresholdDto {
  @IsInt()
  @Min(0)
  @Max(MAX_AMOUNT)
  @ApiProperty({ type: 'integer', minimum: 0, maximum: MAX_AMOUNT, description: '0 turns it off' })
  threshold!: number;
}
